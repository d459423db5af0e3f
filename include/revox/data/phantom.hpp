// revox/data/phantom.hpp — synthetic BraTS-like cases, so the whole pipeline (reading,
// training, prediction, evaluation) runs on a fresh machine without the registration-gated
// BraTS data.
//
// make_phantom(options) builds one case in memory:
//   image  Tensor<float>        (1, 4, D, H, W), modalities t1, t1ce, t2, flair
//   labels Tensor<std::uint8_t> (1, 1, D, H, W), BraTS 2020 labels: 0 background,
//          1 necrotic core (NCR/NET), 2 edema, 4 enhancing tumor
//   tissue Tensor<std::uint8_t> (1, 1, D, H, W), the Tissue class of every voxel (ground truth
//          for tests and pictures; not part of the BraTS format)
// NIfTI x = W (left-right), y = H (anterior-posterior), z = D (inferior-superior); the
// default 240x240x155 is BraTS's grid at 1 mm, and smaller sizes shrink the same anatomy.
//
// Anatomy, from analytic shapes only (no iterative methods, so a full-size case takes about
// a second): an irregular head (scalp and skull around the brain) and a brain, both
// ellipsoids perturbed by smooth low-frequency noise; an outer CSF layer and sulci, a
// cortical grey-matter ribbon of varying depth, two lateral ventricles (CSF) and two deep
// grey-matter nuclei, white matter elsewhere. One tumor of random size, position, aspect and
// irregular shape: a perturbed ellipsoidal "radius" rho around its centre gives, nested,
// the necrotic core (rho < necrosis fraction), the enhancing rim (rho < 1; labelled necrotic
// too when options.enhancing is false, the LGG-like case with an empty ET) and the edema
// (rho < edema factor). The tumor lies entirely inside the brain, clear of its outer CSF.
// Intensities: a fixed value per tissue and modality with the usual relative contrasts
//   T1:    white matter > grey matter > tumor, CSF dark
//   T1ce:  like T1, enhancing rim brightest
//   T2:    CSF and edema bright, white matter darker than grey
//   FLAIR: edema bright, CSF dark
// times a smooth multiplicative bias field per modality (exp(bias_field * noise)), plus
// Gaussian noise (noise * the modality's white-matter value). Skull-stripped by default as
// in BraTS: every voxel outside the brain is exactly 0, every voxel inside is positive.
//
// Randomness: one seed decides everything. The shape parameters come from an Rng; the
// per-voxel noise comes from a counter-based hash of (seed, modality, voxel), so the result
// does not depend on the thread count (OpenMP over D planes).
//
// write_phantom_dataset(root, cases, size, naming, seed) writes cases in the exact BraTS
// layout (float32 images, uint8 seg, 1 mm default geometry, .nii.gz):
//   brats2017 (the 2020 layout): <root>/BraTS20_Training_001/BraTS20_Training_001_{t1,t1ce,
//                                t2,flair,seg}.nii.gz, labels {0, 1, 2, 4}
//   brats2023:                   <root>/BraTS-GLI-00001-000/BraTS-GLI-00001-000-{t1n,t1c,
//                                t2w,t2f,seg}.nii.gz, labels {0, 1, 2, 3}
// Every 4th case (4, 8, ...) has no enhancing tumor. This header needs nifti_clib (for the
// writer): link the revox::nifti CMake target.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <system_error>
#include <vector>

#include "revox/core/error.hpp"
#include "revox/core/random.hpp"
#include "revox/core/tensor.hpp"
#include "revox/data/brats.hpp"

#include "revox/io/nifti.hpp"

namespace revox::data {

// Tissue classes of PhantomCase::tissue.
enum class Tissue : std::uint8_t {
  background = 0,
  csf = 1,
  grey_matter = 2,
  white_matter = 3,
  edema = 4,
  necrosis = 5,
  enhancing = 6,
  skull = 7,
  scalp = 8,
};
inline constexpr int kTissueCount = 9;

struct PhantomOptions {
  index_t width = 240;   // W, NIfTI x
  index_t height = 240;  // H, NIfTI y
  index_t depth = 155;   // D, NIfTI z
  std::uint64_t seed = 1;
  bool enhancing = true;       // false: no enhancing rim, the core is all NCR/NET (ET empty)
  bool skull_stripped = true;  // false: scalp and skull keep their intensities
  double noise = 0.03;         // Gaussian noise std, relative to white matter
  double bias_field = 0.1;     // amplitude of the smooth log-bias field
};

struct PhantomCase {
  Tensor<float> image;          // (1, 4, D, H, W): t1, t1ce, t2, flair
  Tensor<std::uint8_t> labels;  // (1, 1, D, H, W): {0, 1, 2, 4}
  Tensor<std::uint8_t> tissue;  // (1, 1, D, H, W): Tissue values
};

namespace detail {

// Mean intensity of each tissue (rows: Tissue values) in t1, t1ce, t2, flair.
inline constexpr float kPhantomIntensity[kTissueCount][4] = {
    {0.0f, 0.0f, 0.0f, 0.0f},          // background
    {250.0f, 280.0f, 1500.0f, 150.0f},  // csf
    {550.0f, 600.0f, 850.0f, 650.0f},   // grey matter
    {750.0f, 780.0f, 600.0f, 500.0f},   // white matter
    {480.0f, 520.0f, 1250.0f, 1150.0f},  // edema
    {300.0f, 320.0f, 1400.0f, 600.0f},  // necrosis
    {450.0f, 1350.0f, 1000.0f, 900.0f},  // enhancing
    {80.0f, 80.0f, 60.0f, 50.0f},       // skull
    {900.0f, 900.0f, 700.0f, 600.0f},   // scalp
};
inline constexpr int kWhiteMatter = static_cast<int>(Tissue::white_matter);

inline std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Approximately standard normal from 64 hashed bits: the sum of four 16-bit uniforms
// (Irwin-Hall, variance 1/3), rescaled. Cheap, and a pure function of its key.
inline double hashed_normal(std::uint64_t key) {
  const std::uint64_t bits = splitmix64(key);
  double sum = 0.0;
  for (int i = 0; i < 4; ++i) {
    sum += (static_cast<double>((bits >> (16 * i)) & 0xFFFFu) + 0.5) / 65536.0;
  }
  return (sum - 2.0) * 1.7320508075688772;
}

// A smooth random field on the volume: a sum of kTerms separable products of cosines of
// the normalised coordinates (each in [-1, 1]), scaled to unit variance and clamped to
// [-kClamp, kClamp]. Separable, so a whole H row costs kTerms products per voxel after an
// O(kTerms) row set-up.
class SmoothNoise {
 public:
  static constexpr int kTerms = 6;
  static constexpr double kClamp = 2.5;

  SmoothNoise() = default;
  SmoothNoise(Rng& rng, index_t depth, index_t height, index_t width, double min_frequency,
              double max_frequency)
      : width_(width) {
    const index_t extents[3] = {depth, height, width};
    for (int axis = 0; axis < 3; ++axis) {
      const index_t n = extents[axis];
      tables_[axis].resize(static_cast<std::size_t>(kTerms * n));
      for (int k = 0; k < kTerms; ++k) {
        const double frequency = rng.uniform(min_frequency, max_frequency);
        const double phase = rng.uniform(0.0, 6.283185307179586);
        for (index_t i = 0; i < n; ++i) {
          const double u = normalised(i, n);
          tables_[axis][static_cast<std::size_t>(k * n + i)] =
              std::cos(6.283185307179586 * frequency * u + phase);
        }
      }
    }
    depth_ = depth;
    height_ = height;
  }

  // Per-row coefficients for row (d, h).
  void row(index_t d, index_t h, double coefficients[kTerms]) const {
    const double scale = 1.0 / std::sqrt(static_cast<double>(kTerms) / 8.0);
    for (int k = 0; k < kTerms; ++k) {
      coefficients[k] = scale * tables_[0][static_cast<std::size_t>(k * depth_ + d)] *
                        tables_[1][static_cast<std::size_t>(k * height_ + h)];
    }
  }
  double at(const double coefficients[kTerms], index_t w) const {
    double sum = 0.0;
    for (int k = 0; k < kTerms; ++k) {
      sum += coefficients[k] * tables_[2][static_cast<std::size_t>(k * width_ + w)];
    }
    return std::clamp(sum, -kClamp, kClamp);
  }

  // Voxel i of an axis of n voxels in [-1, 1] (0 at the centre).
  static double normalised(index_t i, index_t n) {
    return (static_cast<double>(i) - 0.5 * static_cast<double>(n - 1)) /
           (0.5 * static_cast<double>(n));
  }

 private:
  std::vector<double> tables_[3];
  index_t depth_ = 0, height_ = 0, width_ = 0;
};

// A tumor drawn in brain-normalised coordinates (the brain ellipsoid is the unit ball).
struct PhantomTumor {
  double centre[3] = {0, 0, 0};  // (x, y, z)
  double radius[3] = {1, 1, 1};  // core (enhancing rim) radii
  double necrosis = 0.5;         // fraction of the core radius
  double edema = 1.6;            // multiple of the core radius
  double irregularity = 0.12;    // amplitude of the log-radius noise
};

// Ellipsoidal radius of point b about `centre` with radii `radius`.
inline double ellipsoid_radius(const double b[3], const double centre[3], const double radius[3]) {
  double sum = 0.0;
  for (int a = 0; a < 3; ++a) {
    const double t = (b[a] - centre[a]) / radius[a];
    sum += t * t;
  }
  return std::sqrt(sum);
}

}  // namespace detail

inline PhantomCase make_phantom(const PhantomOptions& options) {
  REVOX_CHECK(options.width >= 8 && options.height >= 8 && options.depth >= 8,
              "make_phantom: width, height and depth must be at least 8, got ", options.width,
              "x", options.height, "x", options.depth);
  REVOX_CHECK(options.noise >= 0.0, "make_phantom: noise must be non-negative, got ",
              options.noise);
  REVOX_CHECK(options.bias_field >= 0.0, "make_phantom: bias_field must be non-negative, got ",
              options.bias_field);
  const index_t D = options.depth, H = options.height, W = options.width;
  using detail::SmoothNoise;

  // Brain ellipsoid in normalised volume coordinates (x = W, y = H, z = D).
  const double brain_radius[3] = {0.60, 0.72, 0.72};
  const double brain_centre_z = 0.05;
  constexpr double kBrainIrregularity = 0.05;  // log-radius noise amplitude
  constexpr double kOuterCsf = 0.95;           // brain radius where the outer CSF begins
  constexpr double kSkull = 1.07;              // skull up to here, scalp up to kHead
  constexpr double kHead = 1.15;

  Rng rng(options.seed);
  const SmoothNoise brain_noise(rng, D, H, W, 0.5, 1.5);
  const SmoothNoise cortex_noise(rng, D, H, W, 2.0, 4.0);
  const SmoothNoise sulci_noise(rng, D, H, W, 3.0, 6.0);
  const SmoothNoise structure_noise(rng, D, H, W, 1.0, 2.5);
  const SmoothNoise tumor_noise(rng, D, H, W, 2.0, 5.0);
  std::array<SmoothNoise, 4> bias_noise;
  for (auto& field : bias_noise) field = SmoothNoise(rng, D, H, W, 0.3, 1.0);

  // The tumor must stay inside the brain's inner part whatever the noise does: the brain
  // boundary never comes closer than exp(-amp * clamp) and the tumor's outer radius never
  // goes beyond edema * max(radius) * exp(irregularity * clamp).
  detail::PhantomTumor tumor;
  const double core = rng.uniform(0.13, 0.24);
  for (double& r : tumor.radius) r = core * rng.uniform(0.85, 1.18);
  tumor.necrosis = rng.uniform(0.35, 0.6);
  tumor.edema = rng.uniform(1.5, 1.85);
  const double extent = tumor.edema * *std::max_element(tumor.radius, tumor.radius + 3) *
                        std::exp(tumor.irregularity * SmoothNoise::kClamp);
  const double inner = 0.93 * kOuterCsf * std::exp(-kBrainIrregularity * SmoothNoise::kClamp);
  const double reach = std::max(0.0, inner - extent);
  for (;;) {
    double sum = 0.0;
    for (double& c : tumor.centre) {
      c = rng.uniform(-reach, reach);
      sum += c * c;
    }
    if (sum <= reach * reach) break;
  }

  // Lateral ventricles and deep grey matter, mirrored about x = 0 (brain-normalised).
  const double ventricle_radius[3] = {0.08, 0.38, 0.16};
  const double nucleus_radius[3] = {0.12, 0.18, 0.14};
  const double ventricle_centre[2][3] = {{-0.12, -0.05, 0.10}, {0.12, -0.05, 0.10}};
  const double nucleus_centre[2][3] = {{-0.28, 0.05, -0.10}, {0.28, 0.05, -0.10}};

  const Shape5 shape{1, 4, D, H, W};
  PhantomCase result{Tensor<float>(shape), Tensor<std::uint8_t>(shape.with_channels(1)),
                     Tensor<std::uint8_t>(shape.with_channels(1))};
  float* image = result.image.data();
  std::uint8_t* labels = result.labels.data();
  std::uint8_t* tissue_map = result.tissue.data();
  const index_t plane = D * H * W;
  const std::uint64_t noise_key = detail::splitmix64(options.seed ^ 0x70686A6E746F6D31ull);
  const bool enhancing = options.enhancing;

#pragma omp parallel for schedule(static)
  for (index_t d = 0; d < D; ++d) {
    double brain_row[SmoothNoise::kTerms], cortex_row[SmoothNoise::kTerms],
        sulci_row[SmoothNoise::kTerms], structure_row[SmoothNoise::kTerms],
        tumor_row[SmoothNoise::kTerms], bias_row[4][SmoothNoise::kTerms];
    const double z = SmoothNoise::normalised(d, D);
    for (index_t h = 0; h < H; ++h) {
      const double y = SmoothNoise::normalised(h, H);
      brain_noise.row(d, h, brain_row);
      cortex_noise.row(d, h, cortex_row);
      sulci_noise.row(d, h, sulci_row);
      structure_noise.row(d, h, structure_row);
      tumor_noise.row(d, h, tumor_row);
      for (int c = 0; c < 4; ++c) bias_noise[static_cast<std::size_t>(c)].row(d, h, bias_row[c]);
      for (index_t w = 0; w < W; ++w) {
        const double x = SmoothNoise::normalised(w, W);
        const double b[3] = {x / brain_radius[0], y / brain_radius[1],
                             (z - brain_centre_z) / brain_radius[2]};
        const double r = std::sqrt(b[0] * b[0] + b[1] * b[1] + b[2] * b[2]);
        const double rho = r * std::exp(-kBrainIrregularity * brain_noise.at(brain_row, w));

        Tissue tissue = Tissue::background;
        std::uint8_t label = 0;
        if (rho < 1.0) {
          tissue = Tissue::white_matter;
          const double structure = 1.0 + 0.1 * structure_noise.at(structure_row, w);
          for (int side = 0; side < 2; ++side) {
            if (detail::ellipsoid_radius(b, nucleus_centre[side], nucleus_radius) < structure) {
              tissue = Tissue::grey_matter;
            }
            if (detail::ellipsoid_radius(b, ventricle_centre[side], ventricle_radius) < structure) {
              tissue = Tissue::csf;
            }
          }
          if (rho > 0.80 + 0.04 * cortex_noise.at(cortex_row, w)) tissue = Tissue::grey_matter;
          if ((rho > 0.84 && sulci_noise.at(sulci_row, w) > 1.3) || rho > kOuterCsf) {
            tissue = Tissue::csf;
          }
          const double t = detail::ellipsoid_radius(b, tumor.centre, tumor.radius) *
                           std::exp(-tumor.irregularity * tumor_noise.at(tumor_row, w));
          if (t < tumor.necrosis) {
            tissue = Tissue::necrosis;
            label = 1;
          } else if (t < 1.0) {
            tissue = enhancing ? Tissue::enhancing : Tissue::necrosis;
            label = enhancing ? 4 : 1;
          } else if (t < tumor.edema) {
            tissue = Tissue::edema;
            label = 2;
          }
        } else if (rho < kSkull) {
          tissue = Tissue::skull;
        } else if (rho < kHead) {
          tissue = Tissue::scalp;
        }

        const index_t voxel = (d * H + h) * W + w;
        labels[voxel] = label;
        tissue_map[voxel] = static_cast<std::uint8_t>(tissue);
        const bool visible = tissue != Tissue::background &&
                             !(options.skull_stripped &&
                               (tissue == Tissue::skull || tissue == Tissue::scalp));
        for (int c = 0; c < 4; ++c) {
          float value = 0.0f;
          if (visible) {
            const double base = detail::kPhantomIntensity[static_cast<int>(tissue)][c];
            const double bias =
                std::exp(options.bias_field * bias_noise[static_cast<std::size_t>(c)].at(bias_row[c], w));
            const double sigma = options.noise * detail::kPhantomIntensity[detail::kWhiteMatter][c];
            const double noisy =
                base * bias + sigma * detail::hashed_normal(noise_key + static_cast<std::uint64_t>(c * plane + voxel));
            value = static_cast<float>(std::max(noisy, 1.0));  // inside the brain stays > 0
          }
          image[c * plane + voxel] = value;
        }
      }
    }
  }
  return result;
}

// The extent of the volumes write_phantom_dataset writes.
struct PhantomSize {
  index_t width = 240;
  index_t height = 240;
  index_t depth = 155;
};

// The case id of 1-based case `index` in a naming: BraTS20_Training_001 or BraTS-GLI-00001-000.
inline std::string phantom_case_id(BratsNaming naming, int index) {
  const int limit = naming == BratsNaming::brats2017 ? 999 : 99999;
  REVOX_CHECK(index >= 1 && index <= limit, "phantom_case_id: case index must be in [1, ", limit,
              "], got ", index);
  char buffer[32];
  if (naming == BratsNaming::brats2017) {
    std::snprintf(buffer, sizeof buffer, "BraTS20_Training_%03d", index);
  } else {
    std::snprintf(buffer, sizeof buffer, "BraTS-GLI-%05d-000", index);
  }
  return buffer;
}

// Whether case `index` (1-based) of a phantom dataset has an enhancing tumor, and its seed.
inline bool phantom_case_enhancing(int index) { return index % 4 != 0; }
inline std::uint64_t phantom_case_seed(std::uint64_t dataset_seed, int index) {
  return detail::splitmix64(dataset_seed * 0x100000001B3ull + static_cast<std::uint64_t>(index));
}

// Called after each case with (cases written, total, case folder).
using PhantomProgress = std::function<void(int, int, const std::filesystem::path&)>;

// Writes cases 1..cases under root (created if needed) and returns their folders. Refuses,
// before writing anything, when a case folder already exists and is not empty. Prints
// nothing; pass `progress` to report.
inline std::vector<std::filesystem::path> write_phantom_dataset(
    const std::filesystem::path& root, int cases, PhantomSize size = {},
    BratsNaming naming = BratsNaming::brats2017, std::uint64_t seed = 1,
    const PhantomProgress& progress = {}) {
  namespace fs = std::filesystem;
  const int limit = naming == BratsNaming::brats2017 ? 999 : 99999;
  REVOX_CHECK(cases >= 1 && cases <= limit, "write_phantom_dataset: cases must be in [1, ",
              limit, "] for this naming, got ", cases);
  std::vector<fs::path> folders;
  for (int index = 1; index <= cases; ++index) {
    const fs::path folder = root / phantom_case_id(naming, index);
    std::error_code error;
    if (fs::exists(folder, error)) {
      REVOX_CHECK(fs::is_directory(folder, error), "write_phantom_dataset: '", folder.string(),
                  "' exists and is not a folder; refusing to overwrite it");
      REVOX_CHECK(fs::is_empty(folder, error) && !error, "write_phantom_dataset: case folder '",
                  folder.string(), "' exists and is not empty; refusing to overwrite it "
                  "(choose another root or remove the folder)");
    }
    folders.push_back(folder);
  }

  const auto suffixes = modality_suffixes(naming);
  const char* separator = naming == BratsNaming::brats2017 ? "_" : "-";
  const std::uint8_t enhancing_value =
      enhancing_label(default_label_convention(naming));
  const io::NiftiGeometry geometry = io::default_geometry();
  for (int index = 1; index <= cases; ++index) {
    const fs::path& folder = folders[static_cast<std::size_t>(index - 1)];
    const std::string id = phantom_case_id(naming, index);
    std::error_code error;
    fs::create_directories(folder, error);
    REVOX_CHECK(!error, "write_phantom_dataset: cannot create case folder '", folder.string(),
                "': ", error.message());

    PhantomOptions options;
    options.width = size.width;
    options.height = size.height;
    options.depth = size.depth;
    options.seed = phantom_case_seed(seed, index);
    options.enhancing = phantom_case_enhancing(index);
    PhantomCase phantom = make_phantom(options);

    const Shape5 volume_shape = phantom.labels.shape();
    Tensor<float> modality(volume_shape);
    for (int c = 0; c < 4; ++c) {
      std::memcpy(modality.data(), phantom.image.data() + c * volume_shape.spatial(),
                  modality.bytes());
      io::write_nifti(folder / (id + separator + suffixes[static_cast<std::size_t>(c)] + ".nii.gz"),
                      modality, geometry);
    }
    for (index_t i = 0; i < phantom.labels.numel(); ++i) {
      if (phantom.labels[i] == 4) phantom.labels[i] = enhancing_value;
    }
    io::write_nifti_labels(folder / (id + separator + "seg.nii.gz"), phantom.labels, geometry);
    if (progress) progress(index, cases, folder);
  }
  return folders;
}

}  // namespace revox::data
