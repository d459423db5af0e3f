// memory_table — the paper's memory claims (3x the volume, +25% depth or 2x the channels of a
// non-reversible network at a fixed budget), computed for revox with the memory planner
// (revox/models/memory_planner.hpp) and, where a step is cheap enough to run here, measured
// with the tracking allocator.
//
// For a budget (default 14 GB = 14e9 bytes, the paper's) and the MBConv-Base family, once
// reversible (the presets' defaults: reversible encoder, lean decoder, lean MBConv blocks)
// and once as the non-reversible network that keeps everything (reversible = false,
// decoder_memory = block_memory = "stored"):
//   volume: the largest cubic input side s (a multiple of 2^(levels-1)) whose training step
//           fits; reported as s and s^3 voxels;
//   depth:  the most levels at a fixed cubic input (--depth-size, default 128 as the paper's
//           MBConv-Deeper); levels beyond the preset's five continue its widths by doubling
//           (240 -> 480 -> 960 ...: MBConv-Deeper's sixth level is 480), and the input side
//           must stay divisible by 2^(levels-1); the same at the paper's 160 x 256 x 256
//           (160 = 5 x 2^5 allows at most 6 levels); and, since a U-Net's levels cost little at
//           a fixed input, depth also as the most reversible blocks per level (search capped
//           at 64; not measured: a 64-block step is slow here);
//   width:  the largest width multiplier m (step 0.01) at the paper's 160 x 256 x 256: every
//           width becomes the nearest multiple of 2 * num_groups to m * width (at least one),
//           so that GroupNorm still divides its halves;
// and the planned peak of the four paper presets at their paper input size, both ways and a
// third way: reversible with the stored decoder and stored blocks (revox's numbers before the
// lean decoder and blocks).
// One training step = Parameters + Adam state + input + target + logits + their gradient,
// forward with saved, loss gradient, backward, Adam step; float32, batch 1.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iomanip>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "revox/models/memory_planner.hpp"
#include "revox/models/unet_config.hpp"

namespace {

using revox::index_t;
using revox::Shape5;
using revox::UNetConfig;

struct Options {
  double budget_gb = 14.0;
  bool json = false;
  bool measure = false;
  double measure_limit_gb = 2.0;
  index_t depth_size = 128;
};

const char* kUsage =
    "usage: memory_table [--budget-gb X] [--json] [--measure] [--measure-limit-gb X]\n"
    "                    [--depth-size S] [--help]\n"
    "  --budget-gb X         memory budget in GB (1 GB = 1e9 bytes; default 14, the paper's)\n"
    "  --json                print one JSON object instead of the tables\n"
    "  --measure             also run one real training step (CPU) for every result whose\n"
    "                        planned peak is below --measure-limit-gb, and report its peak\n"
    "  --measure-limit-gb X  default 2\n"
    "  --depth-size S        cubic input side for the depth search (default 128)\n";

[[noreturn]] void usage_error(const std::string& message) {
  std::cerr << "memory_table: " << message << "\n" << kUsage;
  std::exit(2);
}

double parse_positive(const std::string& flag, const char* text) {
  if (text == nullptr) usage_error(flag + " needs a value");
  char* end = nullptr;
  const double value = std::strtod(text, &end);
  if (end == text || *end != '\0' || !std::isfinite(value) || value <= 0.0) {
    usage_error(flag + " must be a positive number, got '" + text + "'");
  }
  return value;
}

Options parse_args(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const char* next = i + 1 < argc ? argv[i + 1] : nullptr;
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      std::exit(0);
    } else if (arg == "--json") {
      options.json = true;
    } else if (arg == "--measure") {
      options.measure = true;
    } else if (arg == "--budget-gb") {
      options.budget_gb = parse_positive(arg, next);
      ++i;
    } else if (arg == "--measure-limit-gb") {
      options.measure_limit_gb = parse_positive(arg, next);
      ++i;
    } else if (arg == "--depth-size") {
      const double size = parse_positive(arg, next);
      if (size != std::floor(size) || size > 4096) {
        usage_error(std::string("--depth-size must be an integer from 1 to 4096, got '") +
                    next + "'");
      }
      options.depth_size = static_cast<index_t>(size);
      ++i;
    } else {
      usage_error("unknown argument '" + arg + "'");
    }
  }
  return options;
}

// A planned (and possibly measured) training step.
struct Result {
  UNetConfig config;
  Shape5 input{};
  std::size_t predicted = 0;
  revox::MemoryPlan plan;
  std::optional<std::size_t> measured;
  bool found = false;
};

std::size_t plan_peak(const UNetConfig& config, Shape5 input) {
  return revox::plan_training_memory(config, input).peak_bytes;
}

Result make_result(const UNetConfig& config, Shape5 input) {
  Result r;
  r.config = config;
  r.input = input;
  r.plan = revox::plan_training_memory(config, input);
  r.predicted = r.plan.peak_bytes;
  r.found = true;
  return r;
}

Shape5 cube(index_t side) { return Shape5{1, 4, side, side, side}; }

// (a) the largest cubic side that fits.
Result max_volume(const UNetConfig& config, double budget) {
  const index_t step = config.size_divisor();
  Result best;
  for (index_t side = step; side <= 4096; side += step) {
    const Shape5 input = cube(side);
    if (static_cast<double>(plan_peak(config, input)) > budget) break;
    best = make_result(config, input);
  }
  return best;
}

std::vector<index_t> deeper_widths(const std::vector<index_t>& widths, index_t levels) {
  std::vector<index_t> out;
  for (index_t i = 0; i < levels; ++i) {
    const auto k = static_cast<std::size_t>(i);
    out.push_back(k < widths.size() ? widths[k] : 2 * out.back());
  }
  return out;
}

// (b) the most levels at `input`; also says whether divisibility capped it.
Result max_levels(const UNetConfig& base, Shape5 input, double budget, bool& capped) {
  Result best;
  capped = false;
  for (index_t levels = 1; levels <= 16; ++levels) {
    const index_t divisor = index_t{1} << (levels - 1);
    if (input.d % divisor != 0 || input.h % divisor != 0 || input.w % divisor != 0) {
      capped = best.found;
      break;
    }
    UNetConfig c = base;
    c.widths = deeper_widths(base.widths, levels);
    c.input_size = {input.d, input.h, input.w};
    if (static_cast<double>(plan_peak(c, input)) <= budget) best = make_result(c, input);
  }
  return best;
}

// Depth counted in blocks instead: the most reversible blocks per level (at most `cap`) of
// the preset at a cubic input of side `size`.
Result max_blocks(const UNetConfig& base, index_t size, double budget, index_t cap) {
  Result best;
  for (index_t blocks = 1; blocks <= cap; ++blocks) {
    UNetConfig c = base;
    c.blocks_per_level = blocks;
    if (static_cast<double>(plan_peak(c, cube(size))) > budget) break;
    best = make_result(c, cube(size));
  }
  return best;
}

std::vector<index_t> scaled_widths(const std::vector<index_t>& widths, index_t num_groups,
                                   double multiplier) {
  std::vector<index_t> out;
  const double quantum = static_cast<double>(2 * num_groups);
  for (index_t w : widths) {
    const auto units = std::llround(static_cast<double>(w) * multiplier / quantum);
    out.push_back(2 * num_groups * std::max<index_t>(1, static_cast<index_t>(units)));
  }
  return out;
}

// (c) the largest width multiplier (in hundredths) at `input`; the peak never falls as m grows.
Result max_width(const UNetConfig& base, Shape5 input, double budget, double& multiplier) {
  auto fits = [&](index_t hundredths) {
    UNetConfig c = base;
    c.widths = scaled_widths(base.widths, base.num_groups, static_cast<double>(hundredths) / 100.0);
    return static_cast<double>(plan_peak(c, input)) <= budget;
  };
  multiplier = 0.0;
  if (!fits(1)) return Result{};
  index_t low = 1, high = 2;
  while (high < 100000 && fits(high)) {
    low = high;
    high *= 2;
  }
  while (high - low > 1) {
    const index_t mid = (low + high) / 2;
    (fits(mid) ? low : high) = mid;
  }
  multiplier = static_cast<double>(low) / 100.0;
  UNetConfig c = base;
  c.widths = scaled_widths(base.widths, base.num_groups, multiplier);
  return make_result(c, input);
}

// The blocks-per-level search stops here: past it only the parameters grow in reversible mode.
constexpr index_t kMaxBlocks = 64;

struct Family {
  std::string name;
  Result volume, levels, paper_levels, width, blocks;
  bool levels_capped = false;
  bool paper_levels_capped = false;
  double width_multiplier = 0.0;
  std::vector<std::pair<std::string, Result>> presets;
};

void maybe_measure(Result& r, const Options& options) {
  if (!options.measure || !r.found) return;
  if (static_cast<double>(r.predicted) >= options.measure_limit_gb * 1e9) return;
  r.measured = revox::measure_training_memory<float>(r.config, r.input);
}

// How each family changes a preset's config.
using Variant = void (*)(UNetConfig&);
void reversible_lean(UNetConfig&) {}  // the presets' defaults
void all_stored(UNetConfig& c) {
  c.reversible = false;
  c.decoder_memory = "stored";
  c.block_memory = "stored";
}
// revox before the lean decoder and lean MBConv blocks.
void reversible_stored_decoder_and_blocks(UNetConfig& c) {
  c.decoder_memory = "stored";
  c.block_memory = "stored";
}

std::vector<std::pair<std::string, Result>> paper_presets(Variant variant, const Options& options) {
  std::vector<std::pair<std::string, Result>> out;
  for (const char* preset : {"baseline", "mbconv-base", "mbconv-deeper", "mbconv-wider"}) {
    UNetConfig c = revox::unet_preset(preset);
    variant(c);
    const Shape5 input{1, c.in_channels, c.input_size[0], c.input_size[1], c.input_size[2]};
    out.emplace_back(preset, make_result(c, input));
  }
  for (auto& preset : out) maybe_measure(preset.second, options);
  return out;
}

Family run_family(const std::string& name, Variant variant, const Options& options) {
  const double budget = options.budget_gb * 1e9;
  Family f;
  f.name = name;
  UNetConfig base = revox::unet_preset("mbconv-base");
  variant(base);
  f.volume = max_volume(base, budget);
  f.levels = max_levels(base, cube(options.depth_size), budget, f.levels_capped);
  f.blocks = max_blocks(base, options.depth_size, budget, kMaxBlocks);
  const Shape5 paper{1, 4, base.input_size[0], base.input_size[1], base.input_size[2]};
  f.paper_levels = max_levels(base, paper, budget, f.paper_levels_capped);
  f.width = max_width(base, paper, budget, f.width_multiplier);
  for (Result* r : {&f.volume, &f.levels, &f.paper_levels, &f.width}) maybe_measure(*r, options);
  f.presets = paper_presets(variant, options);
  return f;
}

std::string gb(std::size_t bytes) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(3) << static_cast<double>(bytes) / 1e9;
  return out.str();
}

std::string widths_text(const std::vector<index_t>& widths) {
  std::string s;
  for (index_t w : widths) s += (s.empty() ? "" : ",") + std::to_string(w);
  return s;
}

std::string size_text(const Shape5& s) {
  return std::to_string(s.d) + "x" + std::to_string(s.h) + "x" + std::to_string(s.w);
}

std::string measured_text(const Result& r) {
  if (!r.measured) return "-";
  const double ratio = static_cast<double>(*r.measured) / static_cast<double>(r.predicted);
  std::ostringstream out;
  out << gb(*r.measured) << " (" << std::fixed << std::setprecision(4) << ratio << "x)";
  return out.str();
}

nlohmann::json result_json(const Result& r) {
  nlohmann::json j;
  j["input"] = {r.input.d, r.input.h, r.input.w};
  j["widths"] = r.config.widths;
  j["predicted_peak_bytes"] = r.predicted;
  j["parameter_count"] = r.plan.parameter_count;
  j["resident_bytes"] = r.plan.resident_bytes;
  j["saved_bytes"] = r.plan.saved_bytes;
  j["forward_peak_bytes"] = r.plan.forward_peak_bytes;    // above resident
  j["backward_peak_bytes"] = r.plan.backward_peak_bytes;  // above resident
  j["peak_phase"] = r.plan.backward_peak_bytes >= r.plan.forward_peak_bytes ? "backward"
                                                                             : "forward";
  j["peak_at"] = r.plan.peak_at;
  j["decoder_memory"] = r.config.decoder_memory;
  j["block_memory"] = r.config.block_memory;
  j["reversible"] = r.config.reversible;
  if (r.measured) j["measured_peak_bytes"] = *r.measured;
  return j;
}

double ratio(double a, double b) { return b > 0 ? a / b : 0.0; }

// The table's ratio cell: "-" where either side found nothing.
std::string ratio_text(double a, double b) {
  if (a <= 0.0 || b <= 0.0) return "-";
  std::ostringstream out;
  out << std::setprecision(3) << a / b << "x";
  return out.str();
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = parse_args(argc, argv);
  try {
    const Family rev = run_family("reversible", reversible_lean, options);
    const Family sto = run_family("stored", all_stored, options);
    const auto before = paper_presets(reversible_stored_decoder_and_blocks, options);
    const auto voxels = [](const Result& r) {
      return r.found ? static_cast<double>(r.input.numel() / r.input.c) : 0.0;
    };
    const auto levels = [](const Result& r) { return r.found ? r.config.levels() : index_t{0}; };
    const auto blocks = [](const Result& r) {
      return r.found ? r.config.blocks_per_level : index_t{0};
    };
    if (options.json) {
      nlohmann::json j;
      j["budget_bytes"] = options.budget_gb * 1e9;
      j["element_bytes"] = 4;
      j["batch"] = 1;
      j["optimizer"] = "adam";
      j["depth_input_side"] = options.depth_size;
      for (const Family* f : {&rev, &sto}) {
        nlohmann::json fj;
        fj["max_volume_voxels"] = voxels(f->volume);
        fj["max_cubic_side"] = f->volume.found ? f->volume.input.d : 0;
        if (f->volume.found) fj["max_volume"] = result_json(f->volume);
        fj["max_levels"] = levels(f->levels);
        fj["max_levels_capped_by_divisibility"] = f->levels_capped;
        if (f->levels.found) fj["max_levels_step"] = result_json(f->levels);
        fj["max_levels_at_paper_size"] = levels(f->paper_levels);
        fj["max_levels_at_paper_size_capped_by_divisibility"] = f->paper_levels_capped;
        if (f->paper_levels.found) fj["max_levels_at_paper_size_step"] = result_json(f->paper_levels);
        fj["max_blocks_per_level"] = f->blocks.found ? f->blocks.config.blocks_per_level : 0;
        fj["max_blocks_per_level_search_cap"] = kMaxBlocks;
        if (f->blocks.found) fj["max_blocks_step"] = result_json(f->blocks);
        fj["max_width_multiplier"] = f->width_multiplier;
        if (f->width.found) fj["max_width"] = result_json(f->width);
        for (const auto& preset : f->presets) fj["presets"][preset.first] = result_json(preset.second);
        j[f->name] = fj;
      }
      for (const auto& preset : before) {
        j["reversible_stored_decoder_and_blocks"]["presets"][preset.first] = result_json(preset.second);
      }
      j["ratios"] = {{"volume", ratio(voxels(rev.volume), voxels(sto.volume))},
                     {"levels", ratio(static_cast<double>(levels(rev.levels)),
                                      static_cast<double>(levels(sto.levels)))},
                     {"blocks_per_level", ratio(static_cast<double>(blocks(rev.blocks)),
                                                static_cast<double>(blocks(sto.blocks)))},
                     {"width_multiplier", ratio(rev.width_multiplier, sto.width_multiplier)}};
      std::cout << j.dump(2) << "\n";
      return 0;
    }
    std::cout << "Budget " << options.budget_gb << " GB (" << std::setprecision(6)
              << options.budget_gb * 1e9 << " bytes); MBConv-Base family, float32, batch 1, "
              << "Adam; one training step. Peaks in GB (1e9 bytes).\n\n";
    std::cout << "| result | reversible | stored | reversible / stored |\n|---|---|---|---|\n";
    auto cell = [](const Result& r, const std::string& what) {
      return r.found ? what : std::string("nothing fits");
    };
    std::cout << "| largest cubic input (voxels) | "
              << cell(rev.volume, std::to_string(rev.volume.input.d) + "^3 (" +
                                      std::to_string(static_cast<long long>(voxels(rev.volume))) + ")")
              << " | "
              << cell(sto.volume, std::to_string(sto.volume.input.d) + "^3 (" +
                                      std::to_string(static_cast<long long>(voxels(sto.volume))) + ")")
              << " | " << ratio_text(voxels(rev.volume), voxels(sto.volume)) << " |\n";
    auto levels_cell = [&](const Result& r, bool capped) {
      return cell(r, std::to_string(levels(r)) + " (" + widths_text(r.config.widths) + ")" +
                         (capped ? ", capped by divisibility" : ""));
    };
    std::cout << "| most levels at " << options.depth_size << "^3 | "
              << levels_cell(rev.levels, rev.levels_capped) << " | "
              << levels_cell(sto.levels, sto.levels_capped) << " | "
              << ratio_text(static_cast<double>(levels(rev.levels)),
                            static_cast<double>(levels(sto.levels)))
              << " |\n";
    std::cout << "| most levels at 160x256x256 | "
              << levels_cell(rev.paper_levels, rev.paper_levels_capped) << " | "
              << levels_cell(sto.paper_levels, sto.paper_levels_capped) << " | "
              << ratio_text(static_cast<double>(levels(rev.paper_levels)),
                            static_cast<double>(levels(sto.paper_levels)))
              << " |\n";
    auto blocks_cell = [&](const Family& f) {
      return cell(f.blocks, std::to_string(blocks(f.blocks)) +
                                (blocks(f.blocks) == kMaxBlocks ? " (search cap)" : ""));
    };
    std::cout << "| most reversible blocks per level at " << options.depth_size << "^3 | "
              << blocks_cell(rev) << " | " << blocks_cell(sto) << " | "
              << ratio_text(static_cast<double>(blocks(rev.blocks)),
                            static_cast<double>(blocks(sto.blocks)))
              << " |\n";
    auto width_cell = [&](const Family& f) {
      std::ostringstream out;
      out << f.width_multiplier << " (" << widths_text(f.width.config.widths) << ")";
      return cell(f.width, out.str());
    };
    std::cout << "| widest at 160x256x256 (multiplier) | " << width_cell(rev) << " | "
              << width_cell(sto) << " | " << ratio_text(rev.width_multiplier, sto.width_multiplier)
              << " |\n\n";

    std::cout << "| result | family | input | widths x blocks per level | predicted peak | measured peak |\n"
              << "|---|---|---|---|---:|---:|\n";
    for (const Family* f : {&rev, &sto}) {
      const std::pair<const char*, const Result*> rows[] = {
          {"largest volume", &f->volume},
          {"most levels", &f->levels},
          {"most levels at 160x256x256", &f->paper_levels},
          {"widest", &f->width},
          {"most blocks per level", &f->blocks}};
      for (const auto& row : rows) {
        if (!row.second->found) continue;
        std::cout << "| " << row.first << " | " << f->name << " | " << size_text(row.second->input)
                  << " | " << widths_text(row.second->config.widths) << " x "
                  << row.second->config.blocks_per_level << " | "
                  << gb(row.second->predicted) << " | " << measured_text(*row.second) << " |\n";
      }
    }
    std::cout << "\n| paper preset (input) | reversible predicted | stored predicted | "
                 "reversible, stored decoder and blocks (before) predicted | reversible measured | stored measured "
                 "| peak of the reversible step |\n|---|---:|---:|---:|---:|---:|---|\n";
    for (std::size_t p = 0; p < rev.presets.size(); ++p) {
      const Result& r = rev.presets[p].second;
      const Result& s = sto.presets[p].second;
      std::cout << "| " << rev.presets[p].first << " (" << size_text(r.input) << ") | "
                << gb(r.predicted) << " | " << gb(s.predicted) << " | "
                << gb(before[p].second.predicted) << " | " << measured_text(r) << " | "
                << measured_text(s) << " | " << r.plan.peak_at << " |\n";
    }
  } catch (const std::exception& error) {
    std::cerr << "memory_table: " << error.what() << "\n";
    return 1;
  }
  return 0;
}
