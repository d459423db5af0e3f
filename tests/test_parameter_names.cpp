// Checkpoint compatibility: the parameter names, their order and their shapes of MBConv and of
// UNet<float> (every preset, plus deep supervision and expand ratio 1) against golden lists
// in tests/fixtures/parameter_names/*.txt, and checkpoints written by an earlier revox loaded
// into today's layers.
//
// The golden lists were generated from the code as it was before MBConv and UNet named their
// sub-layers by members (commit 45c1770, when MBConv took its names from Sequential
// positions). A checkpoint (io::save_parameters) is a safetensors file holding one tensor per
// parameter under the name visit_params reports and with that parameter's shape, and a strict
// io::load_parameters matches tensors by exactly that name and shape: so equal names and
// shapes mean every checkpoint saved by the old code loads into the new one. The *.safetensors
// files beside the lists are such checkpoints, saved by the old code after
// reset_parameters(Rng(7)); loading them checks the same end to end, and comparing them with
// today's reset_parameters(Rng(7)) checks that the initialisation (its order of random draws)
// did not change either.
//
// Never regenerate these files to make a failing test pass: a difference means old
// checkpoints no longer load. Set REVOX_WRITE_PARAMETER_NAMES=1 only for a deliberate,
// documented change of the checkpoint format.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "revox/core/parameters.hpp"
#include "revox/core/random.hpp"
#include "revox/io/parameters_io.hpp"
#include "revox/layers/mbconv.hpp"
#include "revox/models/unet.hpp"
#include "revox/models/unet_config.hpp"

namespace fs = std::filesystem;

namespace {

fs::path golden_dir() { return fs::path(REVOX_FIXTURE_DIR) / "parameter_names"; }

bool regenerate() {
  const char* env = std::getenv("REVOX_WRITE_PARAMETER_NAMES");
  return env != nullptr && std::string(env) == "1";
}

// "name [d0, d1, ...]" per parameter, in visit_params order.
template <class Layer>
std::vector<std::string> name_list(Layer& layer) {
  std::vector<std::string> lines;
  layer.visit_params([&](const std::string& name, auto& p) {
    std::ostringstream line;
    line << name << ' ' << p.shape;
    lines.push_back(line.str());
  });
  return lines;
}

std::vector<std::string> read_lines(const fs::path& path) {
  std::ifstream in(path);
  REQUIRE(in.good());
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line[0] != '#') lines.push_back(line);
  }
  return lines;
}

template <class Layer>
void check_names(Layer& layer, const std::string& stem, const std::string& what) {
  const std::vector<std::string> actual = name_list(layer);
  const fs::path path = golden_dir() / (stem + ".txt");
  if (regenerate()) {
    fs::create_directories(golden_dir());
    std::ofstream out(path);
    out << "# " << what << ": parameter names and shapes in visit_params order "
        << "(tests/test_parameter_names.cpp)\n";
    for (const std::string& line : actual) out << line << '\n';
    REQUIRE(out.good());
  }
  const std::vector<std::string> golden = read_lines(path);
  INFO(what << " against " << path.string());
  REQUIRE(actual.size() == golden.size());
  for (std::size_t i = 0; i < golden.size(); ++i) {
    INFO("parameter " << i);
    CHECK(actual[i] == golden[i]);
  }
}

// The checkpoint `stem`.safetensors (old code, reset_parameters(Rng(7))) loads strictly into
// `layer` and equals today's reset_parameters(Rng(7)) bit for bit.
template <class Layer>
void check_old_checkpoint(Layer& layer, const std::string& stem) {
  revox::Parameters<float> params(layer);
  revox::Rng rng(7);
  layer.reset_parameters(rng);
  const fs::path path = golden_dir() / (stem + ".safetensors");
  if (regenerate()) revox::io::save_parameters(path.string(), params);
  const std::vector<float> fresh(params.values().data,
                                 params.values().data + params.values().numel());
  for (revox::index_t i = 0; i < params.values().numel(); ++i) params.values()[i] = -3.0f;
  const revox::io::LoadReport report = revox::io::load_parameters(path.string(), params);
  CHECK(report.complete());
  CHECK(report.loaded.size() == params.entries().size());
  for (const revox::ParamEntry& e : params.entries()) {
    INFO("parameter " << e.name << " of " << path.string());
    bool equal = true;
    for (revox::index_t i = e.offset; i < e.offset + e.shape.numel(); ++i) {
      equal = equal && params.values()[i] == fresh[static_cast<std::size_t>(i)];
    }
    CHECK(equal);
  }
}

}  // namespace

TEST_CASE("MBConv parameter names and shapes match the golden lists, e = 1 and e > 1",
          "[parameters][mbconv][checkpoint]") {
  struct Case {
    revox::index_t in, out, expand, groups;
    const char* stem;
  };
  const Case cases[] = {
      {4, 4, 1, 2, "mbconv_4to4_e1_g2"},
      {4, 6, 1, 2, "mbconv_4to6_e1_g2"},
      {4, 6, 2, 2, "mbconv_4to6_e2_g2"},
      {15, 15, 8, 5, "mbconv_15to15_e8_g5"},
  };
  for (const Case& c : cases) {
    for (const bool lean : {false, true}) {  // the mode does not change the names
      revox::MBConv<float> block(c.in, c.out, c.expand, c.groups, lean);
      std::ostringstream what;
      what << "MBConv<float>(" << c.in << ", " << c.out << ", e=" << c.expand << ", groups="
           << c.groups << ")";
      check_names(block, c.stem, what.str());
    }
  }
}

TEST_CASE("UNet parameter names and shapes match the golden lists for every preset",
          "[parameters][unet][checkpoint]") {
  for (const std::string& name : revox::unet_preset_names()) {
    revox::UNet<float> net(revox::unet_preset(name));
    check_names(net, "unet_" + name, "UNet<float>(unet_preset(\"" + name + "\"))");
  }
  // Deep supervision (aux_heads) and MBConv without expansion (no expand stage).
  revox::UNetConfig config = revox::unet_preset("small");
  config.deep_supervision = 2;
  config.expand_ratio = 1;
  revox::UNet<float> net(config);
  check_names(net, "unet_small_e1_ds2",
              "UNet<float>(small, expand_ratio 1, deep_supervision 2)");
}

TEST_CASE("Checkpoints saved before MBConv and UNet named their sub-layers by members load",
          "[parameters][mbconv][unet][checkpoint]") {
  {
    revox::MBConv<float> block(4, 6, 2, 2);
    check_old_checkpoint(block, "mbconv_4to6_e2_g2");
  }
  {
    revox::MBConv<float> block(4, 6, 1, 2);
    check_old_checkpoint(block, "mbconv_4to6_e1_g2");
  }
  {
    revox::UNetConfig config = revox::unet_preset("tiny");
    config.deep_supervision = 1;
    revox::UNet<float> net(config);
    check_old_checkpoint(net, "unet_tiny_ds1");
  }
}
