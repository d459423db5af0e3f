// revox-brats phantom: writes synthetic BraTS-format cases (revox/data/phantom.hpp) so the
// whole pipeline runs without the registration-gated BraTS data.
#include <cstdint>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "commands.hpp"
#include "revox/core/error.hpp"
#include "revox/data/brats.hpp"
#include "revox/data/phantom.hpp"

namespace {

struct PhantomArguments {
  std::string out;
  int cases = 0;
  std::vector<long long> size{240, 240, 155};  // NIfTI x, y, z = W, H, D
  std::string naming = "2020";
  std::uint64_t seed = 1;
  std::string mode = "quick";
};

void run_phantom(const PhantomArguments& args) {
  for (std::size_t axis = 0; axis < 3; ++axis) {
    REVOX_CHECK(args.size[axis] >= 8 && args.size[axis] <= 1024,
                "--size: every extent must be in [8, 1024] voxels, got ", args.size[0], " ",
                args.size[1], " ", args.size[2]);
  }
  const revox::data::BratsNaming naming = args.naming == "2023"
                                              ? revox::data::BratsNaming::brats2023
                                              : revox::data::BratsNaming::brats2017;
  const revox::data::PhantomMode mode = args.mode == "realistic"
                                            ? revox::data::PhantomMode::realistic
                                            : revox::data::PhantomMode::quick;
  revox::data::PhantomSize size;
  size.width = static_cast<revox::index_t>(args.size[0]);
  size.height = static_cast<revox::index_t>(args.size[1]);
  size.depth = static_cast<revox::index_t>(args.size[2]);
  std::cout << "phantom: writing " << args.cases << " case" << (args.cases == 1 ? "" : "s")
            << " of " << size.width << " x " << size.height << " x " << size.depth
            << " voxels (W x H x D), BraTS " << args.naming << " naming, seed " << args.seed
            << ", into " << args.out << "\n"
            << std::flush;
  revox::data::write_phantom_dataset(
      args.out, args.cases, size, naming, args.seed,
      [&](int written, int total, const std::filesystem::path& folder) {
        std::cout << "phantom: [" << written << "/" << total << "] " << folder.string()
                  << (revox::data::phantom_case_enhancing(written) ? ""
                                                                    : " (no enhancing tumor)")
                  << "\n"
                  << std::flush;
      },
      mode);
  std::cout << "phantom: done, " << args.cases << " case" << (args.cases == 1 ? "" : "s")
            << " in " << args.out << "\n";
}

}  // namespace

void add_phantom_command(CLI::App& app) {
  auto args = std::make_shared<PhantomArguments>();
  CLI::App* command = app.add_subcommand(
      "phantom",
      "Write synthetic BraTS-format cases (four modalities + segmentation, .nii.gz, 1 mm "
      "geometry): a brain with a tumor per case; every 4th case has no enhancing tumor. "
      "Refuses to overwrite existing case folders.");
  command
      ->add_option("--out", args->out, "Folder to write the case folders into (created if needed)")
      ->required();
  command->add_option("--cases", args->cases, "Number of cases to write")
      ->required()
      ->check(CLI::Range(1, 99999));
  command->add_option("--size", args->size,
                      "Volume size X Y Z in voxels (NIfTI order: W H D); BraTS is 240 240 155")
      ->expected(3)
      ->capture_default_str();
  command->add_option("--naming", args->naming,
                      "File naming and labels: 2020 (BraTS20_Training_001_t1.nii.gz, labels "
                      "0 1 2 4) or 2023 (BraTS-GLI-00001-000-t1n.nii.gz, labels 0 1 2 3)")
      ->check(CLI::IsMember({"2020", "2023"}))
      ->capture_default_str();
  command->add_option("--mode", args->mode,
                      "quick: idealised anatomy, one smooth tumor, fixed contrasts, little "
                      "noise (easy; for smoke tests). realistic: folded cortex, ventricles and "
                      "deep grey matter that vary per case, jittered scanner contrasts, "
                      "partial-volume blur, bias field and Rician noise (SNR 8-20), irregular "
                      "tumors (multi-focal in about a quarter of cases) that displace the "
                      "anatomy, with or without necrosis, incomplete enhancing rims and edema "
                      "that follows white matter, plus unlabelled enhancing vessels, choroid "
                      "plexus and dura and FLAIR-bright periventricular caps")
      ->check(CLI::IsMember({"quick", "realistic"}))
      ->capture_default_str();
  command->add_option("--seed", args->seed, "Seed: the same seed writes the same cases")
      ->capture_default_str();
  command->callback([args] { run_phantom(*args); });
}
