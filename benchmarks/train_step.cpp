// train_step — one real training step of a revox::UNet on this CPU, at any size (the paper's
// 160 x 256 x 256 included): the planned peak beside the tracking allocator's measured peak
// and the process's maximum resident set, the step's wall time by phase, and where the time
// goes op by op (revox/core/profile.hpp).
//
//   train_step [--preset NAME] [--size D,H,W] [--set KEY=VALUE ...] [--steps N] [--json FILE]
//
// The step is measure_training_memory's (revox/models/memory_planner.hpp): parameters,
// Adam, a random input and target, forward with saved, soft Dice gradient, backward, Adam
// step, float32, batch 1; with --steps N it runs N such steps (each from fresh parameters) and
// reports the last, so that the first step's page faults and thread start-up are left out. --set overrides a key of the UNet config (revox/models/
// unet_config.hpp), e.g. --set decoder_memory=stored --set reversible=false; VALUE is JSON
// where it parses as JSON, a string otherwise. Threads: OMP_NUM_THREADS.
#include <sys/resource.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "revox/core/memory.hpp"
#include "revox/core/profile.hpp"
#include "revox/models/memory_planner.hpp"
#include "revox/models/unet_config.hpp"

namespace {

const char* kUsage =
    "usage: train_step [--preset NAME] [--size D,H,W] [--set KEY=VALUE ...] [--json FILE]\n"
    "  --preset NAME     UNet preset (default mbconv-base)\n"
    "  --size D,H,W      input extents (default: the preset's input_size)\n"
    "  --set KEY=VALUE   override a UNet config key (VALUE as JSON, else as a string)\n"
    "  --steps N         run N steps, report the last (default 1)\n"
    "  --json FILE       also write the results as JSON to FILE (refuses to overwrite)\n";

[[noreturn]] void usage_error(const std::string& message) {
  std::cerr << "train_step: " << message << "\n" << kUsage;
  std::exit(2);
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(colon + 2);
    }
  }
  return "unknown";
}

int threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

double max_rss_gb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) * 1024.0 / 1e9;  // ru_maxrss is in KiB
}

std::string gb(std::size_t bytes) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(3) << static_cast<double>(bytes) / 1e9;
  return out.str();
}

}  // namespace

int main(int argc, char** argv) {
  std::string preset = "mbconv-base";
  std::string size_text;
  std::string json_path;
  long steps = 1;
  nlohmann::json overrides = nlohmann::json::object();
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const char* next = i + 1 < argc ? argv[i + 1] : nullptr;
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return 0;
    }
    if (arg != "--preset" && arg != "--size" && arg != "--set" && arg != "--json" &&
        arg != "--steps") {
      usage_error("unknown argument '" + arg + "'");
    }
    if (next == nullptr) usage_error(arg + " needs a value");
    ++i;
    if (arg == "--preset") preset = next;
    if (arg == "--size") size_text = next;
    if (arg == "--json") json_path = next;
    if (arg == "--steps") {
      char* end = nullptr;
      steps = std::strtol(next, &end, 10);
      if (end == next || *end != '\0' || steps < 1 || steps > 1000) {
        usage_error(std::string("--steps must be an integer from 1 to 1000, got '") + next + "'");
      }
    }
    if (arg == "--set") {
      const std::string kv = next;
      const auto eq = kv.find('=');
      if (eq == std::string::npos || eq == 0) usage_error("--set needs KEY=VALUE, got '" + kv + "'");
      const std::string value = kv.substr(eq + 1);
      const auto parsed = nlohmann::json::parse(value, nullptr, /*allow_exceptions=*/false);
      overrides[kv.substr(0, eq)] = parsed.is_discarded() ? nlohmann::json(value) : parsed;
    }
  }
  try {
    nlohmann::json config_json = overrides;
    config_json["preset"] = preset;
    const revox::UNetConfig config = revox::unet_config_from_json(config_json);
    revox::Shape5 input{1, config.in_channels, config.input_size[0], config.input_size[1],
                        config.input_size[2]};
    if (!size_text.empty()) {
      long long d = 0, h = 0, w = 0;
      char tail = 0;
      if (std::sscanf(size_text.c_str(), "%lld,%lld,%lld%c", &d, &h, &w, &tail) != 3 || d < 1 ||
          h < 1 || w < 1) {
        usage_error("--size must be D,H,W (three positive integers), got '" + size_text + "'");
      }
      input.d = d;
      input.h = h;
      input.w = w;
    }
    if (input.d == 0) usage_error("the preset has no input_size: pass --size D,H,W");
    if (!json_path.empty() && std::ifstream(json_path).good()) {
      throw revox::Error("train_step: " + json_path + " exists; not overwriting it");
    }
    const revox::MemoryPlan plan = revox::plan_training_memory(config, input);
    std::cout << "train_step: " << preset << " " << revox::to_json(config).dump() << "\n"
              << "input " << input << ", float32, batch 1, Adam; CPU " << cpu_model() << ", "
              << threads() << " threads\n"
              << "planned peak " << gb(plan.peak_bytes) << " GB (resident "
              << gb(plan.resident_bytes) << ", forward keeps " << gb(plan.saved_bytes)
              << ", forward +" << gb(plan.forward_peak_bytes) << ", backward +"
              << gb(plan.backward_peak_bytes) << "); peak at " << plan.peak_at << "\n"
              << "running " << steps << (steps == 1 ? " step" : " steps") << "..." << std::endl;

    revox::StepTimes times;
    revox::OpProfile profile;
    std::size_t measured = 0;
    for (long step = 1; step <= steps; ++step) {
      profile.clear();
      measured = revox::measure_training_memory<float>(config, input, {}, &times);
      if (steps > 1) {
        std::cout << "step " << step << "/" << steps << ": " << std::fixed << std::setprecision(3)
                  << times.step() << " s" << std::endl;
      }
    }
    const double rss = max_rss_gb();
    // What the CPU allocator held from the system at its peak: the blocks in use, rounded up
    // to the pool's size classes, plus freed blocks kept cached for reuse (REVOX_CPU_CACHE_MB,
    // revox/core/memory.hpp). The RSS adds the program, untracked scratch and glibc's heap.
    const std::size_t reserved = revox::cpu_allocator().stats().peak_reserved_bytes;
    std::cout << "measured peak " << gb(measured) << " GB (" << std::setprecision(6)
              << static_cast<double>(measured) / static_cast<double>(plan.peak_bytes)
              << "x the plan); allocator's peak reserved " << gb(reserved)
              << " GB (pooled blocks, cache limit " << gb(revox::cpu_allocator().cache_limit())
              << " GB); process maximum RSS " << std::setprecision(4) << rss << " GB\n"
              << std::fixed << std::setprecision(2) << "step " << times.step()
              << " s: forward " << times.forward << ", loss " << times.loss << ", backward "
              << times.backward << ", Adam " << times.optimizer << " (setup " << times.setup
              << " s, not in the step)\n\n"
              << "| op | seconds | share of the step | calls |\n|---|---:|---:|---:|\n";
    nlohmann::json ops = nlohmann::json::array();
    for (const auto& op : profile.ops()) {
      std::cout << "| " << op.name << " | " << std::setprecision(2) << op.seconds << " | "
                << std::setprecision(1) << 100.0 * op.seconds / times.step() << "% | " << op.calls
                << " |\n";
      ops.push_back({{"op", op.name}, {"seconds", op.seconds}, {"calls", op.calls}});
    }
    const double outside = times.step() - profile.total_seconds();
    std::cout << "| (outside ops: loss, Adam, allocation) | " << std::setprecision(2) << outside
              << " | " << std::setprecision(1) << 100.0 * outside / times.step() << "% | |\n";
    if (!json_path.empty()) {
      nlohmann::json j;
      j["preset"] = preset;
      j["config"] = revox::to_json(config);
      j["input"] = {input.d, input.h, input.w};
      j["cpu"] = cpu_model();
      j["threads"] = threads();
      j["steps"] = steps;
      j["planned_peak_bytes"] = plan.peak_bytes;
      j["planned_resident_bytes"] = plan.resident_bytes;
      j["planned_saved_bytes"] = plan.saved_bytes;
      j["peak_at"] = plan.peak_at;
      j["measured_peak_bytes"] = measured;
      j["max_rss_bytes"] = rss * 1e9;
      j["allocator_peak_reserved_bytes"] = reserved;
      j["allocator_cache_limit_bytes"] = revox::cpu_allocator().cache_limit();
      j["seconds"] = {{"step", times.step()},    {"forward", times.forward},
                      {"loss", times.loss},      {"backward", times.backward},
                      {"optimizer", times.optimizer}, {"setup", times.setup}};
      j["ops"] = ops;
      std::ofstream out(json_path);
      out << j.dump(2) << "\n";
      if (!out) throw revox::Error("train_step: could not write " + json_path);
    }
  } catch (const std::exception& error) {
    std::cerr << "train_step: " << error.what() << "\n";
    return 1;
  }
  return 0;
}
