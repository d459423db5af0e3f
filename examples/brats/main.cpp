// revox-brats: the BraTS trainer, predictor and evaluator in one binary. Every subcommand
// registers itself through commands.hpp; `revox-brats <subcommand> --help` says what it does.
#include <csignal>
#include <exception>
#include <iostream>
#include <string>

#include <CLI/CLI.hpp>

#include "commands.hpp"
#include "revox/core/error.hpp"

namespace {

// The name of the subcommand that was being run, for error messages.
std::string running_subcommand(const CLI::App& app) {
  const auto parsed = app.get_subcommands();
  return parsed.empty() ? std::string("revox-brats")
                        : std::string("revox-brats ") + parsed.front()->get_name();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "revox-brats: train, run and evaluate memory-efficient reversible 3D U-Nets on BraTS "
      "brain-tumour data (or on the synthetic phantom cases it can generate)."};
  // A file size limit (RLIMIT_FSIZE) would otherwise kill the process silently with SIGXFSZ
  // in the middle of a write; ignored, the write fails with EFBIG and the writer reports it
  // with the file's name ("file size limit reached"), leaving the previous file intact.
  std::signal(SIGXFSZ, SIG_IGN);
  app.require_subcommand(1);
  app.fallthrough(false);

  add_phantom_command(app);
  add_preprocess_command(app);
  add_train_command(app);
  add_predict_command(app);
  add_evaluate_command(app);
  add_ensemble_command(app);
  add_plan_command(app);
  add_baseline_command(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    // --help and --version are "errors" with exit code 0; real parse errors exit 2.
    const int code = app.exit(error);
    return code == 0 ? 0 : 2;
  } catch (const revox::InternalError& error) {
    std::cerr << running_subcommand(app) << ": internal error (a bug in revox): " << error.what()
              << "\n";
    return 1;
  } catch (const std::exception& error) {
    std::cerr << running_subcommand(app) << ": error: " << error.what() << "\n";
    return 1;
  }
  return 0;
}
