// save_parameters / load_parameters (revox/io/parameters_io.hpp): bit-exact round trips on
// composite layers, prefixes, strict errors naming every tensor and the file, the non-strict
// report, dtype rules, damaged files, atomic writes, and files written by the Python fixture
// scripts.
#include <catch2/catch.hpp>

#include <sys/resource.h>

#include <csignal>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "revox/core/parameters.hpp"
#include "revox/core/random.hpp"
#include "revox/io/parameters_io.hpp"
#include "revox/io/safetensors.hpp"
#include "revox/layers/activations.hpp"
#include "revox/layers/conv3d.hpp"
#include "revox/layers/group_norm.hpp"
#include "revox/layers/max_pool3d.hpp"
#include "revox/layers/mbconv.hpp"
#include "revox/layers/sequential.hpp"

#include "support/temp_dir.hpp"

namespace fs = std::filesystem;
using namespace revox;
using io::Dtype;
using io::LoadOptions;
using io::SaveOptions;

namespace {

class TempDir : public revox_test::TempDir {
 public:
  TempDir() : revox_test::TempDir("revox_test_parameters_io") {}
};

template <class T>
using ConvNormRelu = Sequential<Conv3d<T>, GroupNorm<T>, ReLU<T>>;

template <class T>
ConvNormRelu<T> make_seq() {
  return ConvNormRelu<T>(Conv3d<T>(2, 4, 3), GroupNorm<T>(2, 4), ReLU<T>());
}

// Random values, plus values whose bits a lossy path would change.
template <class T>
void fill_special(Parameters<T>& params, std::uint64_t seed) {
  Rng rng(seed);
  auto values = params.values();
  for (const auto& e : params.entries()) {
    for (index_t i = 0; i < e.shape.numel(); ++i) {
      values[e.offset + i] = static_cast<T>(rng.uniform(-2.0, 2.0));
    }
  }
  const auto& first = params.entries().front();
  values[first.offset + 0] = -T(0);
  values[first.offset + 1] = std::numeric_limits<T>::denorm_min();
  values[first.offset + 2] = std::numeric_limits<T>::infinity();
  values[first.offset + 3] = T(1) / T(3);
}

template <class T>
bool same_bits(const Parameters<T>& a, const Parameters<T>& b) {
  return a.size() == b.size() &&
         std::memcmp(a.values().data, b.values().data, sizeof(T) * a.size()) == 0;
}

template <class T>
std::vector<T> snapshot(const Parameters<T>& p) {
  return std::vector<T>(p.values().data, p.values().data + p.size());
}

template <class T, class Layer>
void check_round_trip(Layer a, Layer b, const fs::path& file) {
  Parameters<T> pa(a), pb(b);
  fill_special(pa, 1);
  fill_special(pb, 2);
  REQUIRE_FALSE(same_bits(pa, pb));
  SaveOptions save;
  save.metadata = {{"epoch", "7"}, {"note", "round trip"}};
  io::save_parameters(file, pa, save);

  // The file: the visit_params names, PyTorch shapes, the dtype of T.
  const auto header = io::read_safetensors_header(file);
  REQUIRE(header.tensors.size() == pa.entries().size());
  for (const auto& e : pa.entries()) {
    INFO(e.name);
    REQUIRE(header.tensors.count(e.name) == 1);
    const auto& info = header.tensors.at(e.name);
    CHECK(info.dtype == (std::is_same_v<T, float> ? Dtype::F32 : Dtype::F64));
    CHECK(info.shape == std::vector<std::int64_t>(e.shape.dims.begin(),
                                                  e.shape.dims.begin() + e.shape.rank));
  }
  CHECK(header.metadata == save.metadata);

  const io::LoadReport report = io::load_parameters(file, pb);
  CHECK(report.complete());
  CHECK(report.loaded.size() == pa.entries().size());
  CHECK(report.metadata == save.metadata);
  CHECK(same_bits(pa, pb));
}

std::string slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Lowers the process's file-size limit, so that writes past `bytes` fail with EFBIG (and
// SIGXFSZ is ignored), and restores it at scope exit. Works as root too.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &old_) == 0);
    old_handler_ = std::signal(SIGXFSZ, SIG_IGN);
    rlimit lowered = old_;
    lowered.rlim_cur = bytes;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &lowered) == 0);
  }
  ~FileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &old_);
    std::signal(SIGXFSZ, old_handler_);
  }

 private:
  rlimit old_{};
  void (*old_handler_)(int) = nullptr;
};

}  // namespace

TEST_CASE("parameters_io: bit-exact round trip, float and double, composite layers",
          "[parameters_io]") {
  TempDir dir;
  check_round_trip<float>(make_seq<float>(), make_seq<float>(), dir / "seq_f32.safetensors");
  check_round_trip<double>(make_seq<double>(), make_seq<double>(), dir / "seq_f64.safetensors");
  check_round_trip<float>(MBConv<float>(4, 6, 2, 2), MBConv<float>(4, 6, 2, 2),
                          dir / "mbconv_f32.safetensors");
  check_round_trip<double>(MBConv<double>(4, 4, 1, 2), MBConv<double>(4, 4, 1, 2),
                           dir / "mbconv_f64.safetensors");
  // The names are the ones visit_params reports.
  const auto header = io::read_safetensors_header(dir / "mbconv_f32.safetensors");
  CHECK(header.tensors.count("expand.weight") == 1);
  CHECK(header.tensors.count("project_norm.bias") == 1);
  CHECK(io::read_safetensors_header(dir / "seq_f32.safetensors").tensors.count("1.weight") == 1);
  // Only the target is left in the directory: no temporary files.
  CHECK(revox_test::directory_entries(dir.path()) ==
        std::vector<std::string>{"mbconv_f32.safetensors", "mbconv_f64.safetensors",
                                 "seq_f32.safetensors", "seq_f64.safetensors"});
}

TEST_CASE("parameters_io: prefix on save and load", "[parameters_io]") {
  TempDir dir;
  auto a = make_seq<float>(), b = make_seq<float>();
  Parameters<float> pa(a), pb(b);
  fill_special(pa, 3);
  const fs::path file = dir / "prefixed.safetensors";
  SaveOptions save;
  save.prefix = "model.";
  io::save_parameters(file, pa, save);
  const auto written = io::read_safetensors(file);
  for (const auto& [name, tensor] : written.tensors) CHECK(name.rfind("model.", 0) == 0);
  CHECK(written.contains("model.0.weight"));

  // Other tensors outside the prefix are ignored, also in strict mode.
  auto tensors = written.tensors;
  tensors.emplace("optimizer.0.weight", written.at("model.0.weight"));
  tensors.emplace("extra", io::make_safetensor<std::int32_t>({2}, {1, 2}));
  const fs::path mixed = dir / "mixed.safetensors";
  io::write_safetensors(mixed, tensors);
  LoadOptions load;
  load.prefix = "model.";
  const auto report = io::load_parameters(mixed, pb, load);
  CHECK(report.complete());
  CHECK(report.loaded == std::vector<std::string>{"0.weight", "0.bias", "1.weight", "1.bias"});
  CHECK(same_bits(pa, pb));

  // Without the prefix nothing matches: every parameter missing, every tensor unexpected.
  CHECK_THROWS_WITH(io::load_parameters(file, pb),
                    Catch::Contains("missing tensor '0.weight'") &&
                        Catch::Contains("unexpected tensor 'model.0.weight'") &&
                        Catch::Contains("4 missing, 4 unexpected, 0 mismatched"));
}

TEST_CASE("parameters_io: strict load names every problem and the file", "[parameters_io]") {
  TempDir dir;
  auto a = make_seq<float>(), b = make_seq<float>();
  Parameters<float> pa(a), pb(b);
  fill_special(pa, 4);
  fill_special(pb, 5);
  const fs::path good = dir / "good.safetensors";
  io::save_parameters(good, pa);
  auto tensors = io::read_safetensors(good).tensors;

  // One of each kind: 0.bias missing, extra.weight unexpected, 0.weight of another shape,
  // 1.weight F64 (narrowing), 1.bias I32.
  tensors.erase("0.bias");
  tensors.emplace("extra.weight", io::make_safetensor<float>({3}, {1, 2, 3}));
  tensors["0.weight"] = io::make_safetensor<float>({4, 2, 1, 1, 1}, std::vector<float>(8, 1.0f));
  tensors["1.weight"] = io::make_safetensor<double>({4}, {1, 2, 3, 4});
  tensors["1.bias"] = io::make_safetensor<std::int32_t>({4}, {1, 2, 3, 4});
  const fs::path bad = dir / "bad.safetensors";
  io::write_safetensors(bad, tensors);

  const std::vector<float> before = snapshot(pb);
  try {
    io::load_parameters(bad, pb);
    FAIL("a strict load of a mismatched file must throw");
  } catch (const Error& e) {
    const std::string message = e.what();
    INFO(message);
    CHECK_THAT(message, Catch::Contains("'" + bad.string() + "'"));
    CHECK_THAT(message, Catch::Contains("1 missing, 1 unexpected, 3 mismatched"));
    CHECK_THAT(message, Catch::Contains("missing tensor '0.bias' (shape [4])"));
    CHECK_THAT(message, Catch::Contains("unexpected tensor 'extra.weight' (F32 [3])"));
    CHECK_THAT(message, Catch::Contains(
                            "tensor '0.weight': shape [4, 2, 1, 1, 1] in the file, "
                            "[4, 2, 3, 3, 3] expected"));
    CHECK_THAT(message, Catch::Contains("tensor '1.weight': dtype F64 in the file, "
                                        "Parameters<float> needs F32") &&
                            Catch::Contains("allow_narrowing"));
    CHECK_THAT(message, Catch::Contains("tensor '1.bias': dtype I32 in the file, "
                                        "Parameters<float> needs F32"));
  }
  CHECK(snapshot(pb) == before);  // a failed strict load changes nothing

  // A long list is capped.
  auto many = io::read_safetensors(good).tensors;
  for (int i = 0; i < 30; ++i) {
    many.emplace("junk." + std::to_string(i), io::make_safetensor<float>({1}, {0.0f}));
  }
  const fs::path junk = dir / "junk.safetensors";
  io::write_safetensors(junk, many);
  try {
    io::load_parameters(junk, pb);
    FAIL("a strict load of a file with unexpected tensors must throw");
  } catch (const Error& e) {
    const std::string message = e.what();
    CHECK_THAT(message, Catch::Contains("0 missing, 30 unexpected, 0 mismatched"));
    CHECK_THAT(message, Catch::Contains("\n  ... and 10 more"));
    std::size_t lines = 0;
    for (char c : message) lines += c == '\n';
    CHECK(lines == 21);  // 20 problems and the "... more" line
  }
  CHECK(snapshot(pb) == before);
}

TEST_CASE("parameters_io: non-strict load reports and loads what matches", "[parameters_io]") {
  TempDir dir;
  auto a = make_seq<double>(), b = make_seq<double>();
  Parameters<double> pa(a), pb(b);
  fill_special(pa, 6);
  fill_special(pb, 7);
  const fs::path good = dir / "good.safetensors";
  io::save_parameters(good, pa);
  auto tensors = io::read_safetensors(good).tensors;
  tensors.erase("1.bias");
  tensors.emplace("2.weight", io::make_safetensor<double>({1}, {1.0}));
  tensors["1.weight"] = io::make_safetensor<double>({5}, {1, 2, 3, 4, 5});
  const fs::path partial = dir / "partial.safetensors";
  io::write_safetensors(partial, tensors, {{"source", "test"}});

  const std::vector<double> before = snapshot(pb);
  LoadOptions load;
  load.strict = false;
  const io::LoadReport report = io::load_parameters(partial, pb, load);
  CHECK_FALSE(report.complete());
  CHECK(report.loaded == std::vector<std::string>{"0.weight", "0.bias"});
  CHECK(report.missing == std::vector<std::string>{"1.bias"});
  CHECK(report.unexpected == std::vector<std::string>{"2.weight"});
  REQUIRE(report.mismatched.size() == 1);
  CHECK(report.mismatched[0].name == "1.weight");
  CHECK(report.mismatched[0].problem == "shape [5] in the file, [4] expected");
  CHECK(report.metadata.at("source") == "test");

  // Loaded entries equal the source; the others are untouched.
  const auto& entries = pb.entries();
  for (const auto& e : entries) {
    const bool loaded = e.name == "0.weight" || e.name == "0.bias";
    for (index_t i = 0; i < e.shape.numel(); ++i) {
      const double want = loaded ? pa.values()[e.offset + i]
                                 : before[static_cast<std::size_t>(e.offset + i)];
      REQUIRE(std::memcmp(&pb.values()[e.offset + i], &want, sizeof want) == 0);
    }
  }
}

TEST_CASE("parameters_io: dtype rules (exact widening, narrowing only when allowed)",
          "[parameters_io]") {
  TempDir dir;
  auto f = make_seq<float>();
  auto d = make_seq<double>();
  Parameters<float> pf(f);
  Parameters<double> pd(d);
  fill_special(pf, 8);
  fill_special(pd, 9);

  // F32 file into Parameters<double>: every value exactly.
  const fs::path f32 = dir / "f32.safetensors";
  io::save_parameters(f32, pf);
  CHECK(io::load_parameters(f32, pd).complete());
  for (index_t i = 0; i < pf.size(); ++i) {
    REQUIRE(pd.values()[i] == static_cast<double>(pf.values()[i]));
  }

  // F64 file into Parameters<float>: refused, strict or not, unless allow_narrowing.
  fill_special(pd, 10);
  const fs::path f64 = dir / "f64.safetensors";
  io::save_parameters(f64, pd);
  CHECK_THROWS_WITH(io::load_parameters(f64, pf),
                    Catch::Contains("dtype F64 in the file, Parameters<float> needs F32"));
  LoadOptions lenient;
  lenient.strict = false;
  const auto report = io::load_parameters(f64, pf, lenient);
  CHECK(report.loaded.empty());
  CHECK(report.mismatched.size() == 4);
  LoadOptions narrowing;
  narrowing.allow_narrowing = true;
  CHECK(io::load_parameters(f64, pf, narrowing).complete());
  for (index_t i = 0; i < pf.size(); ++i) {
    REQUIRE(pf.values()[i] == static_cast<float>(pd.values()[i]));
  }

  // BF16 (as PyTorch may save) widens exactly into float.
  auto tensors = io::read_safetensors(f32).tensors;
  io::SafeTensor bf16;
  bf16.dtype = Dtype::BF16;
  bf16.shape = {4};
  bf16.bytes = {0x80, 0x3f, 0x00, 0x40, 0x40, 0xc0, 0x00, 0x00};  // 1, 2, -3, 0
  tensors["1.bias"] = bf16;
  const fs::path mixed = dir / "bf16.safetensors";
  io::write_safetensors(mixed, tensors);
  CHECK(io::load_parameters(mixed, pf).complete());
  const auto& bias = pf.entries().back();
  REQUIRE(bias.name == "1.bias");
  CHECK(pf.values()[bias.offset + 0] == 1.0f);
  CHECK(pf.values()[bias.offset + 1] == 2.0f);
  CHECK(pf.values()[bias.offset + 2] == -3.0f);
  CHECK(pf.values()[bias.offset + 3] == 0.0f);
}

TEST_CASE("parameters_io: damaged, truncated and missing files name the file",
          "[parameters_io]") {
  TempDir dir;
  auto a = make_seq<float>();
  Parameters<float> pa(a);
  fill_special(pa, 11);
  const fs::path file = dir / "ok.safetensors";
  io::save_parameters(file, pa);
  const std::vector<float> before = snapshot(pa);

  const fs::path truncated = dir / "truncated.safetensors";
  fs::copy_file(file, truncated);
  fs::resize_file(truncated, fs::file_size(file) - 10);
  CHECK_THROWS_WITH(io::load_parameters(truncated, pa),
                    Catch::Contains(truncated.string()) && Catch::Contains("data section"));

  const fs::path header_cut = dir / "header_cut.safetensors";
  fs::copy_file(file, header_cut);
  fs::resize_file(header_cut, 40);
  CHECK_THROWS_WITH(io::load_parameters(header_cut, pa),
                    Catch::Contains(header_cut.string()) && Catch::Contains("truncated"));

  const fs::path garbage = dir / "garbage.safetensors";
  std::ofstream(garbage) << "this is not a safetensors file at all";
  CHECK_THROWS_WITH(io::load_parameters(garbage, pa), Catch::Contains(garbage.string()));

  CHECK_THROWS_WITH(io::load_parameters(dir / "absent.safetensors", pa),
                    Catch::Contains((dir / "absent.safetensors").string()) &&
                        Catch::Contains("does not exist"));
  CHECK(snapshot(pa) == before);
}

TEST_CASE("parameters_io: a failed save names the path and leaves the old file intact",
          "[parameters_io]") {
  TempDir dir;
  auto a = MBConv<float>(4, 6, 2, 2);
  Parameters<float> pa(a);
  fill_special(pa, 12);
  const fs::path file = dir / "weights.safetensors";
  io::save_parameters(file, pa);
  const std::string old_bytes = slurp(file);
  REQUIRE(old_bytes.size() > 256);

  // A write that fails half-way (the file-size limit stops it after 256 bytes).
  fill_special(pa, 13);
  {
    FileSizeLimit limit(256);
    CHECK_THROWS_WITH(io::save_parameters(file, pa),
                      Catch::Contains(file.string()) && Catch::Contains("failed"));
  }
  CHECK(slurp(file) == old_bytes);
  CHECK(revox_test::directory_entries(dir.path()) ==
        std::vector<std::string>{"weights.safetensors"});

  // A directory that does not exist, and a "directory" that is a regular file.
  const fs::path nowhere = dir / "no_such_dir" / "w.safetensors";
  CHECK_THROWS_WITH(io::save_parameters(nowhere, pa),
                    Catch::Contains(nowhere.string()) &&
                        Catch::Contains("No such file or directory"));
  const fs::path under_file = file / "w.safetensors";
  CHECK_THROWS_WITH(io::save_parameters(under_file, pa),
                    Catch::Contains(under_file.string()) && Catch::Contains("Not a directory"));
  CHECK(slurp(file) == old_bytes);
  CHECK(revox_test::directory_entries(dir.path()) ==
        std::vector<std::string>{"weights.safetensors"});

  // The old file still loads, and a later save replaces it.
  auto b = MBConv<float>(4, 6, 2, 2);
  Parameters<float> pb(b);
  CHECK(io::load_parameters(file, pb).complete());
  io::save_parameters(file, pa);
  CHECK(io::load_parameters(file, pb).complete());
  CHECK(same_bits(pa, pb));
}

TEST_CASE("parameters_io: loads files written by the Python fixture scripts",
          "[parameters_io]") {
  // tests/fixtures/*.safetensors are written by Python (safetensors_writer.py) with the
  // PyTorch state_dict names under "param."; the other tensors are outside the prefix.
  auto check = [](const std::string& fixture, auto layer) {
    INFO(fixture);
    using T = typename decltype(layer)::value_type;
    Parameters<T> params(layer);
    const fs::path path = fs::path(REVOX_FIXTURE_DIR) / (fixture + ".safetensors");
    LoadOptions load;
    load.prefix = "param.";
    const auto report = io::load_parameters(path, params, load);
    CHECK(report.complete());
    CHECK(report.loaded.size() == params.entries().size());
    CHECK(report.metadata.count("torch_version") == 1);
    const auto file = io::read_safetensors(path);
    for (const auto& e : params.entries()) {
      const std::vector<double> want = file.at("param." + e.name).to_double();
      REQUIRE(static_cast<index_t>(want.size()) == e.shape.numel());
      for (index_t i = 0; i < e.shape.numel(); ++i) {
        REQUIRE(params.values()[e.offset + i] == want[static_cast<std::size_t>(i)]);
      }
    }
  };
  check("mbconv_e2_4to6", MBConv<double>(4, 6, 2, 2));
  check("sequential", Sequential(Conv3d<double>(2, 4, 3), GroupNorm<double>(2, 4),
                                 ReLU6<double>(), MaxPool3d<double>()));
  // The same file into a layer of another size fails, naming the tensors.
  MBConv<double> wrong(4, 4, 2, 2);
  Parameters<double> params(wrong);
  LoadOptions load;
  load.prefix = "param.";
  CHECK_THROWS_WITH(io::load_parameters(fs::path(REVOX_FIXTURE_DIR) / "mbconv_e2_4to6.safetensors",
                                        params, load),
                    Catch::Contains("tensor 'param.project.weight': shape [6, 8, 1, 1, 1] in "
                                    "the file, [4, 8, 1, 1, 1] expected"));
}

TEST_CASE("parameters_io: loads a file written by Hugging Face's safetensors package",
          "[parameters_io]") {
  // tests/fixtures/make_parameters_io_fixture.py (safetensors 0.8.0's own serializer):
  // Sequential(Conv3d(2, 4, 3), GroupNorm(2, 4), ReLU) under "model.", element i of the k-th
  // tensor = (i - 50 + k) / 64, and an I64 "step" outside the prefix.
  const fs::path path =
      fs::path(REVOX_FIXTURE_DIR) / "parameters_io" / "official_writer.safetensors";
  auto layer = make_seq<double>();  // F32 data widens exactly into double
  Parameters<double> params(layer);
  LoadOptions load;
  load.prefix = "model.";
  const auto report = io::load_parameters(path, params, load);
  CHECK(report.complete());
  CHECK(report.metadata.at("writer") == "safetensors 0.8.0");
  REQUIRE(params.entries().size() == 4);
  int k = 0;
  for (const auto& e : params.entries()) {
    INFO(e.name);
    for (index_t i = 0; i < e.shape.numel(); ++i) {
      REQUIRE(params.values()[e.offset + i] == static_cast<double>(i - 50 + k) / 64);
    }
    ++k;
  }
  // Without the prefix, strict: the I64 step is reported as unexpected, by name.
  CHECK_THROWS_WITH(io::load_parameters(path, params),
                    Catch::Contains(path.string()) &&
                        Catch::Contains("unexpected tensor 'step' (I64 [])"));
}
