// revox-brats plan: the memory planner's answer (revox/models/memory_planner.hpp) for a model
// preset and a memory budget: the predicted peak of one training step (CPU backend, float,
// Adam) at the preset's own input size, and the largest input that fits the budget, both
// with the preset's aspect ratio and as a cube. The planner replays the allocations of a
// training step without allocating anything, so planning a paper-sized model is instant.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include "commands.hpp"
#include "revox/core/error.hpp"
#include "revox/models/memory_planner.hpp"
#include "revox/models/unet_config.hpp"

namespace {

using revox::index_t;

constexpr double kBytesPerGb = 1e9;  // GB = 1e9 bytes, as in the paper and memory_table
constexpr index_t kLargestExtent = 4096;                  // search limit per axis (voxels)

struct PlanArguments {
  std::string preset;
  double budget_gb = 0.0;
  int batch = 1;
  std::string optimizer = "adam";
};

// GB with three decimals, or MB below 1 GB, where three decimals of a GB say nothing.
std::string gb_text(std::size_t bytes) {
  char text[64];
  const double gb = static_cast<double>(bytes) / kBytesPerGb;
  if (gb >= 1.0) {
    std::snprintf(text, sizeof text, "%.3f GB", gb);
  } else {
    std::snprintf(text, sizeof text, "%.1f MB", gb * 1024.0);
  }
  return text;
}

std::string shape_text(const std::array<index_t, 3>& dhw) {
  return revox::detail::concat(dhw[2], " x ", dhw[1], " x ", dhw[0], " (W x H x D)");
}

revox::MemoryPlan plan_for(const revox::UNetConfig& config, const std::array<index_t, 3>& dhw,
                           int batch, const revox::MemoryPlanOptions& options) {
  return revox::plan_training_memory(
      config, revox::Shape5{batch, config.in_channels, dhw[0], dhw[1], dhw[2]}, options);
}

// The largest k for which shape_of(k) fits the budget (k >= 1), or nullopt if none does.
// The peak grows with k, so a binary search finds it.
template <class ShapeOf>
std::optional<index_t> largest_fitting(const revox::UNetConfig& config, int batch,
                                       const revox::MemoryPlanOptions& options,
                                       std::size_t budget, index_t k_max, ShapeOf shape_of) {
  auto fits = [&](index_t k) {
    return plan_for(config, shape_of(k), batch, options).peak_bytes <= budget;
  };
  if (!fits(1)) return std::nullopt;
  index_t low = 1, high = k_max;  // fits(low) holds
  if (fits(high)) return high;
  while (high - low > 1) {
    const index_t mid = low + (high - low) / 2;
    (fits(mid) ? low : high) = mid;
  }
  return low;
}

void print_plan(const char* title, const std::array<index_t, 3>& dhw,
                const revox::MemoryPlan& plan, std::size_t budget) {
  std::cout << title << shape_text(dhw) << ": predicted peak " << gb_text(plan.peak_bytes)
            << (plan.peak_bytes <= budget ? " (fits)" : " (does NOT fit)") << "\n"
            << "    resident " << gb_text(plan.resident_bytes) << " (parameters, gradients, "
            << "optimizer state, input, target, logits), activations at the peak "
            << gb_text(plan.activation_peak_bytes) << "\n"
            << "    peak reached at: " << plan.peak_at << "\n";
}

void run_plan(const PlanArguments& args) {
  revox::UNetConfig config = revox::unet_preset(args.preset);
  REVOX_CHECK(std::isfinite(args.budget_gb) && args.budget_gb > 0.0,
              "--budget-gb must be a positive number, got ", args.budget_gb);
  const auto budget = static_cast<std::size_t>(args.budget_gb * kBytesPerGb);
  revox::MemoryPlanOptions options;
  options.optimizer = args.optimizer;
  const index_t divisor = config.size_divisor();

  std::array<index_t, 3> native = config.input_size;
  if (native == std::array<index_t, 3>{0, 0, 0}) native = {divisor, divisor, divisor};
  const revox::MemoryPlan native_plan = plan_for(config, native, args.batch, options);

  std::cout << "plan: preset '" << args.preset << "' (" << config.block << " blocks, "
            << (config.reversible ? "reversible" : "stored activations") << ", "
            << "decoder_memory " << config.decoder_memory << ", block_memory "
            << config.block_memory << ", widths";
  for (index_t width : config.widths) std::cout << " " << width;
  std::cout << ", " << native_plan.parameter_count << " parameters), batch " << args.batch
            << ", optimizer " << args.optimizer << ", float, budget " << args.budget_gb
            << " GB (GB = 1e9 bytes)\n"
            << "plan: every input extent must be a multiple of " << divisor << "\n";
  print_plan("  preset input ", native, native_plan, budget);
  if (config.reversible) {
    revox::UNetConfig stored = config;
    stored.reversible = false;
    stored.decoder_memory = "stored";
    stored.block_memory = "stored";
    const revox::MemoryPlan stored_plan = plan_for(stored, native, args.batch, options);
    std::cout << "    (the same network storing all its activations would peak at "
              << gb_text(stored_plan.peak_bytes) << ")\n";
  }

  // Largest input with the preset's aspect: the preset's size scaled by k / k_native, each
  // extent rounded down to a multiple of the divisor.
  const index_t native_units = *std::max_element(native.begin(), native.end()) / divisor;
  auto scaled = [&](index_t k) {
    std::array<index_t, 3> dhw{};
    for (std::size_t a = 0; a < 3; ++a) {
      const index_t units = std::max<index_t>(1, native[a] / divisor * k / native_units);
      dhw[a] = units * divisor;
    }
    return dhw;
  };
  auto cube = [&](index_t k) {
    return std::array<index_t, 3>{k * divisor, k * divisor, k * divisor};
  };
  const index_t k_max = kLargestExtent / divisor;
  const std::optional<index_t> best_scaled =
      largest_fitting(config, args.batch, options, budget, k_max, scaled);
  const std::optional<index_t> best_cube =
      largest_fitting(config, args.batch, options, budget, k_max, cube);
  if (!best_scaled && !best_cube) {
    const revox::MemoryPlan smallest = plan_for(config, cube(1), args.batch, options);
    throw revox::Error(revox::detail::concat(
        "no input fits a budget of ", args.budget_gb, " GB: even ", shape_text(cube(1)),
        " needs ", gb_text(smallest.peak_bytes), " (the parameters, gradients and optimizer "
        "state alone take ", gb_text(smallest.parameter_bytes + smallest.gradient_bytes +
                                     smallest.optimizer_state_bytes), ")"));
  }
  if (best_scaled) {
    print_plan("  largest input with the preset's aspect: ", scaled(*best_scaled),
               plan_for(config, scaled(*best_scaled), args.batch, options), budget);
  }
  if (best_cube) {
    print_plan("  largest cube: ", cube(*best_cube),
               plan_for(config, cube(*best_cube), args.batch, options), budget);
  }
}

}  // namespace

void add_plan_command(CLI::App& app) {
  auto args = std::make_shared<PlanArguments>();
  CLI::App* command = app.add_subcommand(
      "plan",
      "Predict the peak memory of one training step of a model preset (CPU backend, float) "
      "without running it, and the largest input that fits a memory budget");
  std::string presets;
  for (const auto& name : revox::unet_preset_names()) {
    presets += (presets.empty() ? "" : ", ") + name;
  }
  command->add_option("--preset", args->preset, "Model preset: " + presets)->required();
  command->add_option("--budget-gb", args->budget_gb, "Memory budget in GB (1e9 bytes, as the paper's 14 GB)")
      ->required();
  command->add_option("--batch", args->batch, "Batch size")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  command->add_option("--optimizer", args->optimizer, "Optimizer whose state is counted")
      ->check(CLI::IsMember({"adam", "adamw", "sgd", "none"}))
      ->capture_default_str();
  command->callback([args] { run_plan(*args); });
}
