// revox-brats subcommands. main.cpp builds one CLI11 app and calls every add_*_command below;
// each registers its subcommand (options, --help text, callback) on `app`. A callback reports
// bad input by throwing revox::Error (or any std::exception); main prints
// "revox-brats <subcommand>: error: <message>" to stderr and exits 1. CLI11 parse errors
// print CLI11's own message and exit 2.
//
// These are free functions in the global namespace (the interface the three authors of
// examples/brats agreed on); each lives in <name>_command.cpp.
#pragma once

#include <CLI/CLI.hpp>

void add_phantom_command(CLI::App& app);   // phantom_command.cpp
void add_preprocess_command(CLI::App& app);  // preprocess_command.cpp
void add_plan_command(CLI::App& app);      // plan_command.cpp
void add_evaluate_command(CLI::App& app);  // evaluate_command.cpp
void add_train_command(CLI::App& app);     // train_command.cpp
void add_predict_command(CLI::App& app);   // predict_command.cpp
void add_ensemble_command(CLI::App& app);  // ensemble_command.cpp
void add_baseline_command(CLI::App& app);  // baseline_command.cpp
