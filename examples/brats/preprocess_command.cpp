// revox-brats preprocess: prepares a raw BraTS folder once for training at scale
// (revox/data/case_store.hpp): every case cropped to the head, z-scored, with its foreground
// voxel lists, written as one mappable safetensors file under OUT/cases/, then OUT/index.json.
// `train --data OUT` starts from the index in seconds and keeps only a bounded cache of
// mapped cases in memory.
//
// Output: on a terminal one progress line redrawn in place (done/total, rate, ETA); else one
// line per case. A failing case prints one line naming it and the problem; the others go on
// (unless --strict) and the exit status is 1. A rerun skips cases whose file is valid and
// whose sources are unchanged, so an interrupted run (even kill -9: files are written
// atomically and index.json last) resumes where it stopped.
//
// Test-only hook: REVOX_TEST_KILL_IN_PREPROCESS=K sends SIGKILL to the process when the K-th
// case file it writes is complete under its temporary name, before the rename
// (tests/e2e/preprocess_e2e.sh).
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <thread>

#include <CLI/CLI.hpp>

#include "commands.hpp"
#include "progress.hpp"
#include "revox/core/error.hpp"
#include "revox/data/case_store.hpp"
#include "revox/io/nifti.hpp"

namespace {

struct PreprocessArguments {
  std::string data;
  std::string out;
  int threads = 0;
  int margin = 2;
  bool strict = false;
  std::string nan_policy = "error";
};

void run_preprocess(const PreprocessArguments& args) {
  namespace fs = std::filesystem;
  revox::data::PreprocessOptions options;
  options.threads = args.threads > 0
                        ? args.threads
                        : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  options.margin = args.margin;
  options.strict = args.strict;
  options.nan_policy = revox::io::nan_policy_from_string(args.nan_policy);
  const long kill_at = [] {
    const char* value = std::getenv("REVOX_TEST_KILL_IN_PREPROCESS");
    return value == nullptr ? 0L : std::atol(value);
  }();
  std::atomic<long> renames{0};
  if (kill_at > 0) {
    options.before_rename = [&](const std::string&, const fs::path&) {
      if (++renames == kill_at) ::raise(SIGKILL);
    };
  }
  const bool terminal = isatty(fileno(stdout)) != 0;
  std::cout << "preprocess: " << args.data << " -> " << args.out << " (" << options.threads
            << " thread" << (options.threads == 1 ? "" : "s") << ", margin " << options.margin
            << " voxels)\n"
            << std::flush;
  const auto start = std::chrono::steady_clock::now();
  std::size_t written = 0;
  double written_seconds = 0.0;
  auto on_event = [&](const revox::data::PreprocessEvent& e) {
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (e.kind == revox::data::PreprocessEvent::Kind::written) {
      ++written;
      written_seconds += e.seconds;
    }
    // The ETA counts the cases still to do at the rate of this run so far.
    const double left = static_cast<double>(e.total - e.done);
    const double eta = e.done > 0 ? elapsed / static_cast<double>(e.done) * left : 0.0;
    char head[96];
    std::snprintf(head, sizeof head, "[%zu/%zu]", e.done, e.total);
    if (e.kind == revox::data::PreprocessEvent::Kind::failed) {
      if (terminal) std::cout << "\r\033[K";
      std::cout << "preprocess: " << head << " FAILED " << e.id << ": " << e.error << "\n";
    } else if (!e.notes.empty()) {
      if (terminal) std::cout << "\r\033[K";
      std::cout << "preprocess: " << e.notes << "\n";
    }
    char line[256];
    std::snprintf(line, sizeof line, "preprocess: %s %s %s (%.1f s)  elapsed %s  ETA %s", head,
                  e.id.c_str(),
                  e.kind == revox::data::PreprocessEvent::Kind::skipped ? "already done"
                  : e.kind == revox::data::PreprocessEvent::Kind::written ? "written"
                                                                          : "failed",
                  e.seconds, revox::brats::format_duration(elapsed).c_str(),
                  revox::brats::format_duration(eta).c_str());
    if (terminal) {
      std::cout << "\r\033[K" << line << std::flush;
    } else if (e.kind != revox::data::PreprocessEvent::Kind::failed) {
      std::cout << line << "\n" << std::flush;
    }
  };
  const auto summary = revox::data::preprocess_dataset(args.data, args.out, options, on_event);
  if (terminal) std::cout << "\r\033[K";
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  char line[400];
  std::snprintf(line, sizeof line,
                "preprocess: done in %s: %zu written, %zu already done, %zu failed; %zu cases, "
                "%.2f GB in %s (index %s)",
                revox::brats::format_duration(seconds).c_str(), summary.written,
                summary.skipped, summary.failed, summary.index.cases.size(),
                static_cast<double>(summary.index.total_bytes()) / 1e9,
                (fs::path(args.out) / "cases").string().c_str(),
                (fs::path(args.out) / revox::data::kCaseIndexName).string().c_str());
  std::cout << line << "\n";
  if (written > 0) {
    std::snprintf(line, sizeof line, "preprocess: %.2f s per written case on one thread",
                  written_seconds / static_cast<double>(written));
    std::cout << line << "\n";
  }
  if (summary.failed > 0) {
    throw revox::Error(std::to_string(summary.failed) + " case(s) failed (listed above and in "
                       "index.json's \"failed\"); the index lists the other " +
                       std::to_string(summary.index.cases.size()) + ", so `train` can use "
                       "them. Fix or remove the failing case folders and rerun to add them");
  }
}

}  // namespace

void add_preprocess_command(CLI::App& app) {
  auto args = std::make_shared<PreprocessArguments>();
  CLI::App* command = app.add_subcommand(
      "preprocess",
      "Prepare a BraTS folder once for training at scale: each case cropped to the head, "
      "z-scored per modality and written as a mappable file with its tumour voxel lists, plus "
      "an index; then `train --data OUT` starts in seconds with bounded memory. Resumable: a "
      "rerun redoes only missing, damaged or changed cases.");
  command->add_option("--data", args->data, "BraTS folder (any supported release layout)")
      ->required();
  command->add_option("--out", args->out, "Output folder (created; cases/ and index.json)")
      ->required();
  command->add_option("--threads", args->threads,
                      "Cases prepared at once (default: the number of CPU cores)")
      ->check(CLI::Range(0, 1024));
  command->add_option("--margin", args->margin, "Voxels kept around the head's bounding box")
      ->check(CLI::Range(0, 64))
      ->capture_default_str();
  command->add_flag("--strict", args->strict, "Stop at the first failing case");
  command->add_option("--nan-policy", args->nan_policy,
                      "NaN/Inf image voxels: error (the case fails) or zero (set to 0)")
      ->check(CLI::IsMember({"error", "zero"}))
      ->capture_default_str();
  command->callback([args] { run_preprocess(*args); });
}
