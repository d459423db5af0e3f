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
// That is the quick mode (PhantomOptions::mode = quick, the default): easy on purpose.
//
// Realistic mode (mode = realistic; make_realistic_phantom): hard for simple methods yet
// determined by the image and its context. Everything is analytic or procedural (no
// template files). The anatomy is drawn in template millimetres (BraTS's 240 x 240 x 155
// mm field of view, isotropic, shrunk to fit a smaller grid) from smooth random fields
// (sums of plane waves with random directions, separable through complex exponentials):
//   - a brain ellipsoid with per-case radii (+-7%), egg-shaped and perturbed at low
//     frequency; an interhemispheric fissure above and in front of / behind the corpus
//     callosum; a thin outer CSF layer;
//   - a folded cortex: sulci are the sheets where a gyral-frequency field (period 22-29
//     mm) crosses zero, CSF-filled (half-width 0.5-1.3 mm) down to a varying depth (11-18
//     mm +-45%) and lined by a grey-matter ribbon 2.5-3.4 mm thick, which also covers the
//     surface; white matter reaches into the gyri;
//   - lateral ventricles (bodies, frontal, occipital and temporal horns, atria) and a
//     third ventricle, scaled 0.7-1.7 per case; choroid plexus in the atria; caudate,
//     thalamus and lentiform nuclei;
//   - 1 to 3 tumor foci (2-3 with probability 1/4); a focus is the union of 1-3 ellipsoids
//     (mean radius 8-22 mm for the primary, 4-10 mm for satellites) with a log-radius
//     perturbation of amplitude 0.1-0.25. Inside: an enhancing rim 10-40% of the radius
//     thick (varying along the rim), with gaps in half the foci (labelled 1, non-
//     enhancing); a necrotic centre in 70% of enhancing foci (40% without ET), else a
//     solid centre, enhancing or not, sometimes with non-enhancing patches. Cases without
//     enhancement (options.enhancing false) have a core of non-enhancing tumor and
//     sometimes necrosis, all label 1. Edema (label 2) reaches 0.3-1.2 core radii (0.1-0.3
//     in 15% of foci; at most 45 mm from the centre) beyond the core, measured with an
//     anisotropic distance stretched 1.2-1.7 times along a white-matter fibre direction
//     field (left-right in the corpus callosum, up-down in the corona radiata, front-back
//     at the poles, radial under the cortex) and perturbed by smooth noise; it exists only
//     in white matter, deep grey matter and white-matter hyperintensities, so it stops at
//     cortex and CSF;
//   - mass effect: the anatomy is displaced radially away from each focus, by 0.3-0.7
//     times R (the core radius plus 30% of the edema margin) up to R, then falling off
//     as a Gaussian of width 1.5 R + 8 mm, and fading out towards the brain surface; so
//     ventricles near a tumor are compressed and shifted and sulci effaced
//     (options.mass_effect);
//   - distractors, unlabelled (options.distractors): 5-12 tubular veins (radius 1-2 mm
//     over the convexity, 0.8-1.4 mm deep), internal cerebral veins, choroid plexus, dura
//     in patches at the surface and along the falx, all bright on T1ce; FLAIR- and
//     T2-bright periventricular caps (70% of cases) and 0-8 small white-matter lesions.
// Intensities, relative to white matter (t1, t1ce, t2, flair), each jittered per case
// (normal tissue 4%, tumor 8% log-normal):
//   CSF 0.32 0.35 2.5 0.22 | cortex 0.72 0.76 1.35 1.2 | deep grey 0.84 0.86 1.18 1.08
//   WM hyperintensity 0.86 0.88 1.65 1.7 | vessel/choroid/dura 0.8 1.8-2.6 0.7 0.85
//   edema 0.72 0.76 1.75 1.8 (blended over the underlying tissue, 60% at its border, 100%
//   inside) | necrosis 0.4 0.45 2.2 0.5-1.3 | non-enhancing tumor 0.62 0.68 2.0 1.5
//   enhancing 0.76 1.45-2.2 1.55 1.5
// with a 3.5% texture on normal tissue and a heterogeneity of 9% (16% on T2, 14% on T1ce
// of enhancing tumor) in the tumor. Then, in order: a Gaussian partial-volume blur (sigma
// 0.45-0.8 voxels), a global scale per modality (300-1200, different scanners), a smooth
// multiplicative bias field exp(a * field) per modality (a in 0.03-0.12), and Rician noise
// |signal + sigma (n1 + i n2)| with sigma = white matter / SNR, SNR drawn in [8, 20]
// (options.snr fixes it). Skull-stripped as in BraTS: exactly 0 outside the brain,
// positive inside. PhantomCase::details reports what was drawn (SNR, noise sigma, foci,
// necrosis, bias, blur, ventricle scale). A 96 x 96 x 64 case takes about 0.06 s of CPU
// time on one core, a 240 x 240 x 155 case about 1 s.
//
// Randomness: one seed decides everything. The shape parameters come from an Rng; the
// per-voxel noise comes from a counter-based hash of (seed, modality, voxel), so the result
// does not depend on the thread count (OpenMP over D planes).
//
// write_phantom_dataset(root, cases, size, naming, seed, progress, mode) writes cases in the
// exact BraTS layout (float32 images, uint8 seg, 1 mm default geometry, .nii.gz):
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
#include <complex>
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
  vessel = 9,             // realistic mode: contrast-enhancing normal structure (vessel,
                          // choroid plexus, dura), unlabelled
  tumor_core = 10,        // realistic mode: solid non-enhancing tumor core (label 1)
  wm_hyperintensity = 11, // realistic mode: FLAIR-bright white matter that is not tumor
                          // (periventricular caps, small vessel lesions), unlabelled
};
inline constexpr int kTissueCount = 12;

// quick: the fast idealised phantom (the default). realistic: plausible anatomy, contrasts,
// artefacts and varied tumors (see the top of this file).
enum class PhantomMode { quick, realistic };

struct PhantomOptions {
  index_t width = 240;   // W, NIfTI x
  index_t height = 240;  // H, NIfTI y
  index_t depth = 155;   // D, NIfTI z
  std::uint64_t seed = 1;
  bool enhancing = true;       // false: no enhancing rim, the core is all NCR/NET (ET empty)
  bool skull_stripped = true;  // false: scalp and skull keep their intensities
  double noise = 0.03;         // quick mode: Gaussian noise std, relative to white matter
  double bias_field = 0.1;     // quick mode: amplitude of the smooth log-bias field
  PhantomMode mode = PhantomMode::quick;
  // Realistic mode only:
  double snr = 0.0;          // white matter / Rician noise sigma; 0 draws it in [8, 20]
  bool mass_effect = true;   // false: the tumors do not displace the anatomy
  bool distractors = true;   // false: no enhancing vessels, choroid plexus, dura or
                             // FLAIR-bright non-tumor white matter
};

// What a realistic case drew (quick mode leaves the defaults).
struct PhantomDetails {
  double snr = 0.0;                 // white-matter signal / noise sigma (0: quick mode)
  double noise_sigma[4] = {};       // Rician noise sigma per modality
  double white_matter[4] = {};      // nominal white-matter intensity per modality
  int lesions = 1;                  // tumor foci (> 1: multi-focal)
  bool enhancing = true;            // the case has an enhancing tumor (ET not empty)
  bool necrosis = true;             // some focus has a necrotic centre
  double bias_field = 0.0;          // amplitude of the log-bias field
  double blur = 0.0;                // partial-volume Gaussian sigma, voxels
  double ventricle_scale = 1.0;     // ventricle size relative to the template
};

struct PhantomCase {
  Tensor<float> image;          // (1, 4, D, H, W): t1, t1ce, t2, flair
  Tensor<std::uint8_t> labels;  // (1, 1, D, H, W): {0, 1, 2, 4}
  Tensor<std::uint8_t> tissue;  // (1, 1, D, H, W): Tissue values
  PhantomDetails details = {};
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
    {0.0f, 0.0f, 0.0f, 0.0f},           // vessel (realistic mode only)
    {0.0f, 0.0f, 0.0f, 0.0f},           // tumor_core (realistic mode only)
    {0.0f, 0.0f, 0.0f, 0.0f},           // wm_hyperintensity (realistic mode only)
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

// ---------------------------------------------------------------------------------------
// Realistic mode (see the top of this file).

namespace detail {

// A smooth random field: the sum of `terms` plane waves cos(2 pi f k.x + phase) with random
// unit directions k, frequencies f in [min, max] cycles per template millimetre and random
// phases, scaled to unit variance. A plane wave is separable as a product of complex
// exponentials, so a row costs `terms` complex products per voxel after an O(terms) row
// set-up, whatever the directions.
class WaveNoise {
 public:
  static constexpr int kMaxTerms = 16;

  WaveNoise() = default;
  WaveNoise(Rng& rng, int terms, double min_frequency, double max_frequency,
            const std::vector<double> (&mm)[3])
      : terms_(terms), scale_(std::sqrt(2.0 / terms)) {
    REVOX_CHECK(terms >= 1 && terms <= kMaxTerms, "WaveNoise: terms must be in [1, 16]");
    for (int a = 0; a < 3; ++a) tables_[a].resize(static_cast<std::size_t>(terms) * mm[a].size());
    for (int k = 0; k < terms; ++k) {
      double direction[3];
      double norm = 0.0;
      do {
        norm = 0.0;
        for (double& v : direction) {
          v = rng.uniform(-1.0, 1.0);
          norm += v * v;
        }
      } while (norm > 1.0 || norm < 1e-4);
      norm = std::sqrt(norm);
      const double omega = 6.283185307179586 * rng.uniform(min_frequency, max_frequency);
      const double phase = rng.uniform(0.0, 6.283185307179586);
      for (int a = 0; a < 3; ++a) {
        const std::size_t n = mm[a].size();
        for (std::size_t i = 0; i < n; ++i) {
          const double angle = omega * direction[a] / norm * mm[a][i] + (a == 2 ? phase : 0.0);
          tables_[a][k * n + i] = {std::cos(angle), std::sin(angle)};
        }
      }
    }
  }

  // Row coefficients for voxel row (d, h): axes are 0 = x (w), 1 = y (h), 2 = z (d).
  void row(index_t d, index_t h, std::complex<double> coefficients[kMaxTerms]) const {
    const std::size_t ny = tables_[1].size() / static_cast<std::size_t>(terms_);
    const std::size_t nz = tables_[2].size() / static_cast<std::size_t>(terms_);
    for (int k = 0; k < terms_; ++k) {
      coefficients[k] = scale_ * tables_[2][k * nz + static_cast<std::size_t>(d)] *
                        tables_[1][k * ny + static_cast<std::size_t>(h)];
    }
  }
  double at(const std::complex<double> coefficients[kMaxTerms], index_t w) const {
    const std::size_t nx = tables_[0].size() / static_cast<std::size_t>(terms_);
    double sum = 0.0;
    for (int k = 0; k < terms_; ++k) {
      const std::complex<double> t = tables_[0][k * nx + static_cast<std::size_t>(w)];
      sum += coefficients[k].real() * t.real() - coefficients[k].imag() * t.imag();
    }
    return sum;
  }

 private:
  int terms_ = 0;
  double scale_ = 0.0;
  std::vector<std::complex<double>> tables_[3];
};

// Internal anatomy classes of the realistic generator (before tumors and distractors).
enum Anatomy : std::uint8_t {
  kOutside = 0,
  kCsf = 1,        // outer, sulcal and fissure CSF
  kCortex = 2,     // cortical grey matter
  kWhite = 3,      // white matter
  kDeepGrey = 4,   // caudate, thalamus, lentiform nucleus
  kVentricle = 5,  // ventricular CSF
  kChoroid = 6,    // choroid plexus (inside the ventricles; enhances)
  kWmh = 7,        // FLAIR-bright white matter: periventricular caps, small vessel lesions
  kSkull = 8,
  kScalp = 9,
  kAnatomyCount = 10,
};

// Tissue appearance in the realistic mode: rows t1, t1ce, t2, flair relative to white matter.
enum Appearance {
  kAppCsf,
  kAppCortex,
  kAppWhite,
  kAppDeep,
  kAppWmh,
  kAppVessel,
  kAppEdema,
  kAppNecrosis,
  kAppCore,
  kAppEnhancing,
  kAppSkull,
  kAppScalp,
  kAppearanceCount
};
inline constexpr double kRealisticIntensity[kAppearanceCount][4] = {
    {0.32, 0.35, 2.50, 0.22},  // CSF: dark on T1, very bright on T2, suppressed on FLAIR
    {0.72, 0.76, 1.35, 1.20},  // cortical grey matter
    {1.00, 1.00, 1.00, 1.00},  // white matter
    {0.84, 0.86, 1.18, 1.08},  // deep grey matter
    {0.86, 0.88, 1.65, 1.70},  // white-matter hyperintensity
    {0.80, 2.00, 0.70, 0.85},  // enhancing normal structure (T2 flow void)
    {0.72, 0.76, 1.75, 1.80},  // edema
    {0.40, 0.45, 2.20, 0.90},  // necrosis (fluid-like, partly suppressed on FLAIR)
    {0.62, 0.68, 2.00, 1.50},  // non-enhancing solid tumor: T2 brighter, FLAIR darker than edema
    {0.76, 1.90, 1.55, 1.50},  // enhancing tumor
    {0.15, 0.15, 0.12, 0.10},  // skull
    {1.10, 1.10, 0.90, 0.85},  // scalp
};

struct Ellipsoid {
  double centre[3];
  double radius[3];
};

inline double ellipsoid_rho(const double p[3], const Ellipsoid& e) {
  double sum = 0.0;
  for (int a = 0; a < 3; ++a) {
    const double t = (p[a] - e.centre[a]) / e.radius[a];
    sum += t * t;
  }
  return std::sqrt(sum);
}

inline double smoothstep(double edge0, double edge1, double x) {
  const double t = std::clamp((x - edge0) / (edge1 - edge0), 0.0, 1.0);
  return t * t * (3.0 - 2.0 * t);
}

// One tumor focus in template millimetres.
struct RealisticLesion {
  double centre[3] = {0, 0, 0};
  int blobs = 1;
  Ellipsoid blob[3] = {};        // the core is the union of up to three perturbed ellipsoids
  double size = 10.0;            // mean core radius, mm
  double irregularity = 0.2;     // log-radius noise amplitude of the core
  double rim = 0.2;              // enhancing rim thickness, fraction of the core radius
  double gap = 3.0;              // rim gap threshold on a unit field (large: complete rim)
  bool necrosis = true;          // necrotic centre inside the rim
  bool solid_enhancing = false;  // no necrosis: the inside enhances (else non-enhancing)
  double net_patch = 3.0;        // threshold for non-enhancing patches inside (large: none)
  double edema = 1.0;            // edema reach beyond the core, multiple of the core radius
  double anisotropy = 0.6;       // edema elongation along the white-matter fibre direction
  double mass = 0.5;             // mass-effect strength
  double box_low[3] = {0, 0, 0}, box_high[3] = {0, 0, 0};  // bounds of core and edema, mm
  WaveNoise shape, rim_noise, gap_noise, patch_noise, edema_noise;
};

// Separable Gaussian blur of one (D, H, W) volume in place, zero outside the volume.
inline void gaussian_blur(float* volume, index_t D, index_t H, index_t W, double sigma,
                          std::vector<float>& scratch) {
  if (sigma <= 0.0) return;
  const int radius = std::max(1, static_cast<int>(std::ceil(3.0 * sigma)));
  std::vector<float> kernel(static_cast<std::size_t>(2 * radius + 1));
  double total = 0.0;
  for (int j = -radius; j <= radius; ++j) {
    const double v = std::exp(-0.5 * j * j / (sigma * sigma));
    kernel[static_cast<std::size_t>(j + radius)] = static_cast<float>(v);
    total += v;
  }
  for (float& v : kernel) v = static_cast<float>(v / total);
  const index_t n = D * H * W;
  scratch.resize(static_cast<std::size_t>(n));
  float* tmp = scratch.data();
  const index_t extent[3] = {W, H, D};
  const index_t stride[3] = {1, W, H * W};
  for (int axis = 0; axis < 3; ++axis) {
    const float* src = axis == 1 ? tmp : volume;
    float* dst = axis == 1 ? volume : tmp;
    const index_t len = extent[axis], step = stride[axis];
#pragma omp parallel for schedule(static)
    for (index_t d = 0; d < D; ++d) {
      for (index_t h = 0; h < H; ++h) {
        const index_t base = (d * H + h) * W;
        const index_t coordinate_dh[3] = {0, h, d};
        for (index_t w = 0; w < W; ++w) {
          const index_t coordinate = axis == 0 ? w : coordinate_dh[axis];
          const index_t lo = std::max<index_t>(-radius, -coordinate);
          const index_t hi = std::min<index_t>(radius, len - 1 - coordinate);
          float sum = 0.0f;
          for (index_t j = lo; j <= hi; ++j) {
            sum += kernel[static_cast<std::size_t>(j + radius)] * src[base + w + j * step];
          }
          dst[base + w] = sum;
        }
      }
    }
  }
  std::memcpy(volume, tmp, static_cast<std::size_t>(n) * sizeof(float));
}

// Marks a capsule (segment a-b of radius r, template mm) in a fractional map, with a one-
// voxel soft edge; `mm` holds each axis's voxel coordinates, `per_mm` voxels per mm.
inline void draw_capsule(std::vector<float>& map, const std::vector<double> (&mm)[3], double per_mm,
                         const double a[3], const double b[3], double r) {
  const index_t n[3] = {static_cast<index_t>(mm[0].size()), static_cast<index_t>(mm[1].size()),
                        static_cast<index_t>(mm[2].size())};
  index_t lo[3], hi[3];
  const double edge = 0.5 / per_mm;
  for (int ax = 0; ax < 3; ++ax) {
    const double low = std::min(a[ax], b[ax]) - r - 2 * edge;
    const double high = std::max(a[ax], b[ax]) + r + 2 * edge;
    const double origin = mm[ax][0];
    lo[ax] = std::max<index_t>(0, static_cast<index_t>(std::floor((low - origin) * per_mm)));
    hi[ax] =
        std::min<index_t>(n[ax] - 1, static_cast<index_t>(std::ceil((high - origin) * per_mm)));
  }
  double ab[3], ab2 = 0.0;
  for (int ax = 0; ax < 3; ++ax) {
    ab[ax] = b[ax] - a[ax];
    ab2 += ab[ax] * ab[ax];
  }
  for (index_t d = lo[2]; d <= hi[2]; ++d)
    for (index_t h = lo[1]; h <= hi[1]; ++h)
      for (index_t w = lo[0]; w <= hi[0]; ++w) {
        const double p[3] = {mm[0][static_cast<std::size_t>(w)], mm[1][static_cast<std::size_t>(h)],
                             mm[2][static_cast<std::size_t>(d)]};
        double t = 0.0;
        for (int ax = 0; ax < 3; ++ax) t += (p[ax] - a[ax]) * ab[ax];
        t = ab2 > 0.0 ? std::clamp(t / ab2, 0.0, 1.0) : 0.0;
        double dist2 = 0.0;
        for (int ax = 0; ax < 3; ++ax) {
          const double e = p[ax] - a[ax] - t * ab[ax];
          dist2 += e * e;
        }
        const double fraction = std::clamp((r + edge - std::sqrt(dist2)) / (2 * edge), 0.0, 1.0);
        float& cell = map[static_cast<std::size_t>((d * n[1] + h) * n[0] + w)];
        cell = std::max(cell, static_cast<float>(fraction));
      }
}

}  // namespace detail

// The realistic phantom (options.mode is ignored here; make_phantom dispatches on it).
inline PhantomCase make_realistic_phantom(const PhantomOptions& options) {
  REVOX_CHECK(options.width >= 8 && options.height >= 8 && options.depth >= 8,
              "make_phantom: width, height and depth must be at least 8, got ", options.width, "x",
              options.height, "x", options.depth);
  REVOX_CHECK(options.snr >= 0.0, "make_phantom: snr must be non-negative (0 draws it), got ",
              options.snr);
  using detail::WaveNoise;
  using std::complex;
  constexpr int kT = WaveNoise::kMaxTerms;
  const index_t D = options.depth, H = options.height, W = options.width;
  const index_t plane = D * H * W;

  // Template millimetres: the anatomy is drawn for BraTS's 240 x 240 x 155 mm field of view
  // and shrunk isotropically to fit a smaller grid.
  const double per_mm = std::min({static_cast<double>(W) / 240.0, static_cast<double>(H) / 240.0,
                                  static_cast<double>(D) / 155.0});
  std::vector<double> mm[3];
  const index_t extents[3] = {W, H, D};
  for (int a = 0; a < 3; ++a) {
    mm[a].resize(static_cast<std::size_t>(extents[a]));
    for (index_t i = 0; i < extents[a]; ++i) {
      mm[a][static_cast<std::size_t>(i)] =
          (static_cast<double>(i) - 0.5 * static_cast<double>(extents[a] - 1)) / per_mm;
    }
  }

  Rng rng(options.seed);
  PhantomCase result{Tensor<float>(Shape5{1, 4, D, H, W}),
                     Tensor<std::uint8_t>(Shape5{1, 1, D, H, W}),
                     Tensor<std::uint8_t>(Shape5{1, 1, D, H, W}), PhantomDetails{}};
  PhantomDetails& details = result.details;

  // ---- Case parameters (all drawn here, in a fixed order) ----
  double brain_radius[3] = {66.0 * rng.uniform(0.93, 1.07), 84.0 * rng.uniform(0.93, 1.07),
                            60.0 * rng.uniform(0.93, 1.07)};
  const double brain_centre_z = rng.uniform(5.0, 12.0);
  const double fissure_shift = rng.uniform(-2.0, 2.0);
  const double gyral_frequency = rng.uniform(0.034, 0.046);
  const double sulcus_width = rng.uniform(0.5, 1.3);  // CSF half-width in a sulcus, mm
  const double cortex_thickness = rng.uniform(2.5, 3.4);
  const double sulcus_depth = rng.uniform(11.0, 18.0);
  const double ventricle_scale = std::exp(rng.uniform(std::log(0.7), std::log(1.7)));
  details.ventricle_scale = ventricle_scale;
  const double cap_size = rng.uniform01() < 0.3 ? 0.0 : rng.uniform(0.1, 0.45);
  const WaveNoise brain_noise(rng, 6, 0.004, 0.010, mm);
  const WaveNoise fold_noise(rng, 14, gyral_frequency * 0.8, gyral_frequency * 1.2, mm);
  const WaveNoise depth_noise(rng, 5, 0.008, 0.02, mm);
  const WaveNoise structure_noise(rng, 6, 0.015, 0.035, mm);
  const WaveNoise texture_noise(rng, 10, 0.05, 0.14, mm);
  const WaveNoise dura_noise(rng, 6, 0.01, 0.03, mm);
  WaveNoise bias_noise[4];
  for (auto& field : bias_noise) field = WaveNoise(rng, 5, 0.003, 0.008, mm);
  details.bias_field = rng.uniform(0.03, 0.12);
  details.snr = options.snr > 0.0 ? options.snr : rng.uniform(8.0, 20.0);
  details.blur = rng.uniform(0.45, 0.8);
  // Scanner: a global scale per modality, and per-tissue contrast jitter.
  double scale[4];
  for (double& s : scale) s = rng.uniform(300.0, 1200.0);
  double appearance[detail::kAppearanceCount][4];
  for (int t = 0; t < detail::kAppearanceCount; ++t) {
    const bool tumor = t >= detail::kAppEdema && t <= detail::kAppEnhancing;
    for (int c = 0; c < 4; ++c) {
      const double jitter = std::exp(rng.normal() * (tumor ? 0.08 : 0.04));
      appearance[t][c] = t == detail::kAppWhite ? 1.0 : detail::kRealisticIntensity[t][c] * jitter;
    }
  }
  appearance[detail::kAppEnhancing][1] = rng.uniform(1.45, 2.2);
  appearance[detail::kAppNecrosis][3] = rng.uniform(0.5, 1.3);
  appearance[detail::kAppVessel][1] = rng.uniform(1.8, 2.6);
  for (int c = 0; c < 4; ++c) {
    details.white_matter[c] = scale[c];
    details.noise_sigma[c] = scale[c] / details.snr;
  }

  // Deep anatomy, mirrored (template mm relative to the brain centre; +y anterior).
  const double sx = brain_radius[0] / 66.0, sy = brain_radius[1] / 84.0,
               sz = brain_radius[2] / 60.0;
  const double vs = ventricle_scale, vy = 1.0 + 0.3 * (ventricle_scale - 1.0);
  std::vector<detail::Ellipsoid> ventricles, nuclei, choroid, caps;
  for (int side = -1; side <= 1; side += 2) {
    const double m = side;
    auto at = [&](double x, double y, double z, double rx, double ry, double rz) {
      return detail::Ellipsoid{{m * x * sx, y * sy, brain_centre_z + z * sz},
                               {rx * sx, ry * sy, rz * sz}};
    };
    ventricles.push_back(at(8.0 + 2.5 * vs, -4.0, 14.0, 5.0 * vs, 28.0 * vy, 6.5 * vs));  // body
    ventricles.push_back(
        at(10.0 + 1.5 * vs, 22.0, 8.0, 4.5 * vs, 11.0 * vy, 9.0 * vs));  // frontal horn
    ventricles.push_back(at(16.0 + 2.0 * vs, -30.0, 8.0, 6.0 * vs, 12.0 * vy, 8.0 * vs));  // atrium
    ventricles.push_back(at(21.0, -45.0, 6.0, 3.0 * vs, 10.0 * vy, 4.0 * vs));   // occipital horn
    ventricles.push_back(at(29.0, -8.0, -17.0, 2.5 * vs, 16.0 * vy, 3.0 * vs));  // temporal horn
    nuclei.push_back(at(15.0 + 2.0 * vs, 14.0, 6.0, 5.5, 10.0, 8.0));            // caudate
    nuclei.push_back(at(10.0, -14.0, 0.0, 8.0, 13.0, 9.0));                      // thalamus
    nuclei.push_back(at(25.0 + 1.5 * vs, 4.0, -2.0, 6.5, 16.0, 10.0));           // lentiform
    choroid.push_back(at(16.0 + 2.0 * vs, -30.0, 5.0, 3.0 * vs, 6.0 * vy, 3.5 * vs));
    if (cap_size > 0.0) {
      const double f = 1.0 + cap_size;
      caps.push_back(at(10.0 + 1.5 * vs, 24.0 + 3.0 * cap_size, 8.0, 4.5 * vs * f, 11.0 * vy * f,
                        9.0 * vs * f));
      caps.push_back(at(18.0 + 2.0 * vs, -36.0 - 3.0 * cap_size, 8.0, 6.0 * vs * f, 12.0 * vy * f,
                        8.0 * vs * f));
    }
  }
  ventricles.push_back(detail::Ellipsoid{{0.0, -4.0 * sy, brain_centre_z - 2.0 * sz},
                                         {1.2 * vs, 14.0 * sy, 8.0 * sz}});  // third ventricle
  // Distractors draw from their own stream, so switching them off changes nothing else.
  Rng distractor_rng(detail::splitmix64(options.seed ^ 0x6469737472616374ull));
  // Scattered small white-matter hyperintensities.
  std::vector<detail::Ellipsoid> wmh;
  const int wmh_count = static_cast<int>(distractor_rng.below(9));
  for (int i = 0; i < wmh_count; ++i) {
    const double u[3] = {distractor_rng.uniform(-0.6, 0.6), distractor_rng.uniform(-0.6, 0.6),
                         distractor_rng.uniform(-0.3, 0.6)};
    const double r = distractor_rng.uniform(1.5, 4.5);
    wmh.push_back(detail::Ellipsoid{
        {u[0] * brain_radius[0], u[1] * brain_radius[1], brain_centre_z + u[2] * brain_radius[2]},
        {r * distractor_rng.uniform(0.7, 1.3), r * distractor_rng.uniform(0.7, 1.3), r}});
  }
  if (!options.distractors) {
    choroid.clear();
    caps.clear();
    wmh.clear();
  }

  // ---- Tumors ----
  details.enhancing = options.enhancing;
  const bool multifocal = rng.uniform01() < 0.25;
  details.lesions = multifocal ? 2 + static_cast<int>(rng.below(2)) : 1;
  details.necrosis = false;
  std::vector<detail::RealisticLesion> lesions(static_cast<std::size_t>(details.lesions));
  for (std::size_t i = 0; i < lesions.size(); ++i) {
    detail::RealisticLesion& lesion = lesions[i];
    const bool primary = i == 0;
    lesion.size = primary ? rng.uniform(8.0, 22.0) : rng.uniform(4.0, 10.0);
    lesion.irregularity = rng.uniform(0.1, 0.25);
    // Centre: inside the brain, far enough from its surface for the core, and apart from
    // the other foci.
    for (int attempt = 0;; ++attempt) {
      const double u[3] = {rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(-1, 1)};
      const double reach = std::max(0.2, 0.82 - lesion.size / 60.0);
      if (u[0] * u[0] + u[1] * u[1] + u[2] * u[2] > 1.0) continue;
      const double c[3] = {u[0] * reach * brain_radius[0], u[1] * reach * brain_radius[1],
                           brain_centre_z + u[2] * reach * brain_radius[2]};
      bool apart = true;
      for (std::size_t j = 0; j < i; ++j) {
        double dist2 = 0.0;
        for (int a = 0; a < 3; ++a)
          dist2 += (c[a] - lesions[j].centre[a]) * (c[a] - lesions[j].centre[a]);
        apart = apart && std::sqrt(dist2) > 1.6 * (lesions[j].size * (1 + lesions[j].edema));
      }
      if (apart || attempt > 200) {
        std::copy(c, c + 3, lesion.centre);
        break;
      }
    }
    lesion.blobs = primary ? 1 + static_cast<int>(rng.below(3)) : 1;
    for (int b = 0; b < lesion.blobs; ++b) {
      const double r = lesion.size * (b == 0 ? 1.0 : rng.uniform(0.45, 0.8));
      for (int a = 0; a < 3; ++a) {
        lesion.blob[b].centre[a] =
            lesion.centre[a] + (b == 0 ? 0.0 : rng.uniform(-0.9, 0.9) * lesion.size);
        lesion.blob[b].radius[a] = r * rng.uniform(0.75, 1.3);
      }
    }
    lesion.rim = rng.uniform(0.1, 0.4);
    lesion.gap = rng.uniform01() < 0.5 ? rng.uniform(0.3, 1.5) : 4.0;
    lesion.necrosis = options.enhancing ? rng.uniform01() < 0.7 : rng.uniform01() < 0.4;
    lesion.necrosis = lesion.necrosis && lesion.size > 6.0;
    details.necrosis = details.necrosis || lesion.necrosis;
    lesion.solid_enhancing = rng.uniform01() < 0.5;
    lesion.net_patch = rng.uniform01() < 0.5 ? rng.uniform(0.6, 1.6) : 4.0;
    lesion.edema = rng.uniform01() < 0.15 ? rng.uniform(0.1, 0.3) : rng.uniform(0.3, 1.2);
    lesion.edema = std::min(lesion.edema, 45.0 / lesion.size - 1.0);  // edema radius <= 45 mm
    lesion.anisotropy = rng.uniform(0.3, 0.65);
    lesion.mass = rng.uniform(0.3, 0.7);
    if (!options.mass_effect) lesion.mass = 0.0;
    lesion.shape = WaveNoise(rng, 8, 0.025, 0.07, mm);
    lesion.rim_noise = WaveNoise(rng, 6, 0.04, 0.1, mm);
    lesion.gap_noise = WaveNoise(rng, 6, 0.03, 0.07, mm);
    lesion.patch_noise = WaveNoise(rng, 6, 0.05, 0.12, mm);
    lesion.edema_noise = WaveNoise(rng, 8, 0.02, 0.06, mm);
    double reach = 0.0;
    for (int b = 0; b < lesion.blobs; ++b) {
      double far = 0.0;
      for (int a = 0; a < 3; ++a) {
        far = std::max(
            far, std::abs(lesion.blob[b].centre[a] - lesion.centre[a]) + lesion.blob[b].radius[a]);
      }
      reach = std::max(reach, far);
    }
    const double core_reach = reach * std::exp(lesion.irregularity * 4.0);
    const double edema_reach = lesion.size * (1.0 + lesion.edema) * std::exp(0.28 * 2.5) /
                               std::sqrt(1.0 - lesion.anisotropy);
    for (int a = 0; a < 3; ++a) {
      lesion.box_low[a] = lesion.centre[a] - std::max(core_reach, edema_reach);
      lesion.box_high[a] = lesion.centre[a] + std::max(core_reach, edema_reach);
    }
  }

  // ---- Enhancing distractors: cortical and deep veins as tubes (fraction map) ----
  std::vector<float> vessel_map;
  if (options.distractors) {
    vessel_map.assign(static_cast<std::size_t>(plane), 0.0f);
    const int veins = 5 + static_cast<int>(distractor_rng.below(8));
    for (int v = 0; v < veins; ++v) {
      double dir[3];
      double norm = 0.0;
      do {
        norm = 0.0;
        for (double& x : dir) {
          x = distractor_rng.uniform(-1.0, 1.0);
          norm += x * x;
        }
      } while (norm > 1.0 || norm < 1e-3);
      for (double& x : dir) x /= std::sqrt(norm);
      dir[2] = std::abs(dir[2]) * 0.8 + 0.1;  // mostly over the convexity
      const double depth =
          v % 3 == 0 ? distractor_rng.uniform(0.55, 0.8) : distractor_rng.uniform(0.9, 0.97);
      const double radius =
          v % 3 == 0 ? distractor_rng.uniform(0.8, 1.4) : distractor_rng.uniform(1.0, 2.0);
      double turn[3] = {distractor_rng.normal(), distractor_rng.normal(), distractor_rng.normal()};
      double previous[3];
      const int steps = 5 + static_cast<int>(distractor_rng.below(7));
      for (int s = 0; s <= steps; ++s) {
        double n2 = 0.0;
        for (double x : dir) n2 += x * x;
        double point[3];
        for (int a = 0; a < 3; ++a) {
          point[a] =
              dir[a] / std::sqrt(n2) * depth * brain_radius[a] + (a == 2 ? brain_centre_z : 0.0);
        }
        if (s > 0) detail::draw_capsule(vessel_map, mm, per_mm, previous, point, radius);
        std::copy(point, point + 3, previous);
        for (int a = 0; a < 3; ++a) {
          turn[a] = 0.7 * turn[a] + 0.5 * distractor_rng.normal();
          dir[a] = dir[a] / std::sqrt(n2) + 0.12 * turn[a];
        }
      }
    }
    // Internal cerebral veins along the roof of the third ventricle.
    for (int side = -1; side <= 1; side += 2) {
      const double a[3] = {side * 2.5 * sx, 8.0 * sy, brain_centre_z + 6.0 * sz};
      const double b[3] = {side * 2.0 * sx, -30.0 * sy, brain_centre_z + 10.0 * sz};
      detail::draw_capsule(vessel_map, mm, per_mm, a, b, 1.3);
    }
  }
  const double dura_threshold = distractor_rng.uniform(1.2, 2.2);
  const std::uint64_t noise_key = detail::splitmix64(options.seed ^ 0x7265616C69737431ull);

  // ---- Pass 1: undisplaced anatomy on the grid ----
  std::vector<std::uint8_t> anatomy(static_cast<std::size_t>(plane));
  std::vector<std::uint8_t> surface(static_cast<std::size_t>(plane), 0);  // under the pia
  const double surface_depth = 1.0 + 1.2 / std::min(1.0, per_mm);
  const double mean_radius = (brain_radius[0] + brain_radius[1] + brain_radius[2]) / 3.0;
  const double fold_gradient = 6.283185307179586 * gyral_frequency;
  const double max_sulcus_depth = sulcus_depth * (1.0 + 0.45 * 2.0);
  const bool skull_stripped = options.skull_stripped;
#pragma omp parallel for schedule(static)
  for (index_t d = 0; d < D; ++d) {
    complex<double> brain_row[kT], fold_row[kT], depth_row[kT], structure_row[kT];
    for (index_t h = 0; h < H; ++h) {
      brain_noise.row(d, h, brain_row);
      fold_noise.row(d, h, fold_row);
      depth_noise.row(d, h, depth_row);
      structure_noise.row(d, h, structure_row);
      const double y = mm[1][static_cast<std::size_t>(h)], z = mm[2][static_cast<std::size_t>(d)];
      for (index_t w = 0; w < W; ++w) {
        const double x = mm[0][static_cast<std::size_t>(w)];
        const double p[3] = {x, y, z};
        const double by = y / brain_radius[1];
        const double bx = x / (brain_radius[0] * (1.0 - 0.07 * by));
        const double bz = (z - brain_centre_z) / brain_radius[2];
        const double rho = std::sqrt(bx * bx + by * by + bz * bz) *
                           std::exp(-0.035 * std::clamp(brain_noise.at(brain_row, w), -3.0, 3.0));
        std::uint8_t cls = detail::kOutside;
        const std::size_t voxel = static_cast<std::size_t>((d * H + h) * W + w);
        if (rho >= 1.0) {
          if (!skull_stripped)
            cls = rho < 1.08 ? detail::kSkull : rho < 1.16 ? detail::kScalp : detail::kOutside;
          anatomy[voxel] = cls;
          continue;
        }
        // Depth below the pial surface, counting the interhemispheric fissure as surface
        // above the corpus callosum and in front and behind it.
        double depth = (1.0 - rho) * mean_radius;
        const double central =
            (by / 0.55) * (by / 0.55) + ((bz + 0.05) / 0.40) * ((bz + 0.05) / 0.40);
        if (central > 1.0) depth = std::min(depth, std::abs(x - fissure_shift) - 1.0);
        surface[voxel] = (1.0 - rho) * mean_radius < surface_depth ? 1 : 0;
        double local_depth = 0.0, sulcus = 1e9;  // sulcus: ~ mm to the sulcal mid-plane
        if (depth < max_sulcus_depth + cortex_thickness) {
          local_depth =
              sulcus_depth * (1.0 + 0.45 * std::clamp(depth_noise.at(depth_row, w), -2.0, 2.0));
          sulcus = std::abs(fold_noise.at(fold_row, w)) / fold_gradient;
        }
        if (depth < 1.0 || (sulcus < sulcus_width && depth < local_depth)) {
          cls = detail::kCsf;
        } else if (depth < cortex_thickness || (sulcus < sulcus_width + cortex_thickness &&
                                                depth < local_depth + cortex_thickness)) {
          cls = detail::kCortex;
        } else {
          cls = detail::kWhite;
          const double wobble =
              depth < 15.0 ? 1.0 : 1.0 + 0.07 * structure_noise.at(structure_row, w);
          for (const auto& e : caps) {
            if (detail::ellipsoid_rho(p, e) < wobble) cls = detail::kWmh;
          }
          for (const auto& e : wmh) {
            if (detail::ellipsoid_rho(p, e) < wobble) cls = detail::kWmh;
          }
          for (const auto& e : nuclei) {
            if (detail::ellipsoid_rho(p, e) < wobble) cls = detail::kDeepGrey;
          }
          for (const auto& e : ventricles) {
            if (detail::ellipsoid_rho(p, e) < wobble) cls = detail::kVentricle;
          }
          if (cls == detail::kVentricle) {
            for (const auto& e : choroid) {
              if (detail::ellipsoid_rho(p, e) < wobble) cls = detail::kChoroid;
            }
          }
        }
        anatomy[voxel] = cls;
      }
    }
  }

  // ---- Pass 2: displaced anatomy, tumors, distractors -> labels, tissue, clean image ----
  float* image = result.image.data();
  std::uint8_t* labels = result.labels.data();
  std::uint8_t* tissue_map = result.tissue.data();
  auto nearest = [&](double v, int axis) {
    const index_t n = extents[axis];
    const double i = v * per_mm + 0.5 * static_cast<double>(n - 1);
    return std::clamp<index_t>(static_cast<index_t>(std::lround(i)), 0, n - 1);
  };
#pragma omp parallel for schedule(static)
  for (index_t d = 0; d < D; ++d) {
    complex<double> texture_row[kT], dura_row[kT], fold_row[kT];
    complex<double> lesion_rows[3][5][kT];
    for (index_t h = 0; h < H; ++h) {
      texture_noise.row(d, h, texture_row);
      dura_noise.row(d, h, dura_row);
      fold_noise.row(d, h, fold_row);
      const double y = mm[1][static_cast<std::size_t>(h)], z = mm[2][static_cast<std::size_t>(d)];
      bool row_hits[3] = {false, false, false};
      for (std::size_t i = 0; i < lesions.size(); ++i) {
        const auto& L = lesions[i];
        row_hits[i] =
            y >= L.box_low[1] && y <= L.box_high[1] && z >= L.box_low[2] && z <= L.box_high[2];
        if (!row_hits[i]) continue;
        L.shape.row(d, h, lesion_rows[i][0]);
        L.rim_noise.row(d, h, lesion_rows[i][1]);
        L.gap_noise.row(d, h, lesion_rows[i][2]);
        L.patch_noise.row(d, h, lesion_rows[i][3]);
        L.edema_noise.row(d, h, lesion_rows[i][4]);
      }
      for (index_t w = 0; w < W; ++w) {
        const index_t voxel = (d * H + h) * W + w;
        const std::uint8_t here = anatomy[static_cast<std::size_t>(voxel)];
        const bool brain =
            here != detail::kOutside && here != detail::kSkull && here != detail::kScalp;
        if (!brain) {
          labels[voxel] = 0;
          const int app = here == detail::kSkull ? detail::kAppSkull : detail::kAppScalp;
          tissue_map[voxel] =
              static_cast<std::uint8_t>(here == detail::kSkull   ? Tissue::skull
                                        : here == detail::kScalp ? Tissue::scalp
                                                                 : Tissue::background);
          for (int c = 0; c < 4; ++c) {
            image[c * plane + voxel] =
                here == detail::kOutside ? 0.0f : static_cast<float>(appearance[app][c]);
          }
          continue;
        }
        const double x = mm[0][static_cast<std::size_t>(w)];
        const double p[3] = {x, y, z};
        const double by = y / brain_radius[1];
        const double bx = x / brain_radius[0];
        const double bz = (z - brain_centre_z) / brain_radius[2];
        const double rho = std::sqrt(bx * bx + by * by + bz * bz);

        // Mass effect: the anatomy seen here comes from nearer the tumor centres.
        std::uint8_t cls = here;
        double q[3] = {x, y, z};
        bool moved = false;
        const double fade = 1.0 - detail::smoothstep(0.78, 0.97, rho);
        for (const auto& L : lesions) {
          if (L.mass <= 0.0 || fade <= 0.0) continue;
          double r2 = 0.0;
          for (int a = 0; a < 3; ++a) r2 += (p[a] - L.centre[a]) * (p[a] - L.centre[a]);
          const double r = std::sqrt(r2);
          const double core = L.size * (1.0 + 0.3 * L.edema);
          const double reach = 1.5 * core + 8.0;
          if (r > core + 3.0 * reach) continue;
          const double excess = std::max(0.0, r - core);
          const double shift =
              std::min(r, L.mass * core * std::exp(-excess * excess / (reach * reach)) * fade);
          if (r > 1e-9) {
            for (int a = 0; a < 3; ++a) q[a] -= shift * (p[a] - L.centre[a]) / r;
            moved = true;
          }
        }
        if (moved) {
          const index_t src = (nearest(q[2], 2) * H + nearest(q[1], 1)) * W + nearest(q[0], 0);
          cls = anatomy[static_cast<std::size_t>(src)];
          if (cls == detail::kOutside || cls == detail::kSkull || cls == detail::kScalp)
            cls = detail::kCsf;
        }

        // Tumors: core (necrosis, non-enhancing, enhancing) over edema over anatomy.
        std::uint8_t label = 0;
        Tissue tumor_tissue = Tissue::background;
        double edema_strength = 0.0;
        const bool edema_allowed =
            cls == detail::kWhite || cls == detail::kDeepGrey || cls == detail::kWmh;
        for (std::size_t i = 0; i < lesions.size() && (label == 0 || label == 2); ++i) {
          const auto& L = lesions[i];
          if (!row_hits[i] || x < L.box_low[0] || x > L.box_high[0]) continue;
          double t = 1e9;
          for (int b = 0; b < L.blobs; ++b) t = std::min(t, detail::ellipsoid_rho(p, L.blob[b]));
          t *= std::exp(-L.irregularity * std::clamp(L.shape.at(lesion_rows[i][0], w), -4.0, 4.0));
          if (t < 1.0) {
            const double rim =
                std::clamp(L.rim * (1.0 + 0.5 * L.rim_noise.at(lesion_rows[i][1], w)), 0.05, 0.7);
            const bool in_rim = t > 1.0 - rim;
            if (options.enhancing) {
              if (in_rim) {
                const bool gap = L.gap_noise.at(lesion_rows[i][2], w) > L.gap;
                tumor_tissue = gap ? Tissue::tumor_core : Tissue::enhancing;
              } else if (L.necrosis) {
                tumor_tissue = Tissue::necrosis;
              } else {
                tumor_tissue = L.solid_enhancing ? Tissue::enhancing : Tissue::tumor_core;
              }
              if (tumor_tissue == Tissue::enhancing && !in_rim &&
                  L.patch_noise.at(lesion_rows[i][3], w) > L.net_patch) {
                tumor_tissue = Tissue::tumor_core;
              }
            } else {
              tumor_tissue = L.necrosis && t < 0.6 ? Tissue::necrosis : Tissue::tumor_core;
            }
            label = tumor_tissue == Tissue::enhancing ? 4 : 1;
            continue;
          }
          if (!edema_allowed || label == 2) continue;
          // Edema: an anisotropic distance, stretched along the local fibre direction.
          const double fibre_cc =
              std::exp(-((bz - 0.25) / 0.18) * ((bz - 0.25) / 0.18) - (bx / 0.35) * (bx / 0.35));
          double fibre[3] = {3.0 * fibre_cc, 1.5 * by * by, (1.0 - fibre_cc) * (1.0 - by * by)};
          const double radial = detail::smoothstep(0.55, 0.85, rho);
          for (int a = 0; a < 3; ++a)
            fibre[a] += 2.0 * radial * (a == 0 ? bx : a == 1 ? by : bz) / std::max(rho, 1e-6);
          double fn = 0.0, along = 0.0, dist2 = 0.0;
          for (double f : fibre) fn += f * f;
          fn = std::sqrt(std::max(fn, 1e-12));
          for (int a = 0; a < 3; ++a) {
            const double delta = p[a] - L.centre[a];
            along += delta * fibre[a] / fn;
            dist2 += delta * delta;
          }
          const double e =
              std::sqrt(std::max(0.0, dist2 - L.anisotropy * along * along)) /
              (L.size * (1.0 + L.edema)) *
              std::exp(-0.28 * std::clamp(L.edema_noise.at(lesion_rows[i][4], w), -2.5, 2.5));
          if (e < 1.0) {
            label = 2;
            edema_strength = 0.6 + 0.4 * detail::smoothstep(0.0, 0.4, 1.0 - e);
          }
        }

        // Appearance.
        int app = detail::kAppWhite;
        Tissue tissue = Tissue::white_matter;
        switch (cls) {
          case detail::kCsf:
            app = detail::kAppCsf;
            tissue = Tissue::csf;
            break;
          case detail::kVentricle:
            app = detail::kAppCsf;
            tissue = Tissue::csf;
            break;
          case detail::kCortex:
            app = detail::kAppCortex;
            tissue = Tissue::grey_matter;
            break;
          case detail::kDeepGrey:
            app = detail::kAppDeep;
            tissue = Tissue::grey_matter;
            break;
          case detail::kWmh:
            app = detail::kAppWmh;
            tissue = Tissue::wm_hyperintensity;
            break;
          case detail::kChoroid:
            app = detail::kAppVessel;
            tissue = Tissue::vessel;
            break;
          default:
            break;
        }
        double vessel = 0.0;
        if (label == 0 && options.distractors) {
          vessel = vessel_map[static_cast<std::size_t>(voxel)];
          // Dura-like enhancement in patches at the surface, and along the falx.
          const bool outer = surface[static_cast<std::size_t>(voxel)] != 0;
          const bool falx = std::abs(x - fissure_shift) < 0.5 / per_mm && cls == detail::kCsf;
          if (outer || falx) {
            const double dura = dura_noise.at(dura_row, w);
            if (outer && dura > dura_threshold) vessel = std::max(vessel, 0.8);
            if (falx && dura > dura_threshold - 0.5) vessel = std::max(vessel, 0.6);
          }
          if (vessel >= 0.5) tissue = Tissue::vessel;
        }
        const double texture_field = texture_noise.at(texture_row, w);
        const double texture = 1.0 + 0.035 * texture_field;
        const double hetero =
            label == 0 || label == 2 ? 0.0 : 0.5 * texture_field + 0.5 * fold_noise.at(fold_row, w);
        for (int c = 0; c < 4; ++c) {
          double value = appearance[app][c] * texture;
          if (label == 2) {
            value += (appearance[detail::kAppEdema][c] - appearance[app][c]) * edema_strength;
          } else if (label != 0) {
            const int tumor_app = tumor_tissue == Tissue::enhancing  ? detail::kAppEnhancing
                                  : tumor_tissue == Tissue::necrosis ? detail::kAppNecrosis
                                                                     : detail::kAppCore;
            const double spread = c == 2                                         ? 0.16
                                  : c == 1 && tumor_app == detail::kAppEnhancing ? 0.14
                                                                                 : 0.09;
            value = appearance[tumor_app][c] * (1.0 + spread * std::clamp(hetero, -2.5, 2.5));
          }
          value = (1.0 - vessel) * value + vessel * appearance[detail::kAppVessel][c];
          image[c * plane + voxel] = static_cast<float>(value);
        }
        if (label != 0) tissue = label == 2 ? Tissue::edema : tumor_tissue;
        labels[voxel] = label;
        tissue_map[voxel] = static_cast<std::uint8_t>(tissue);
      }
    }
  }

  // ---- Pass 3: partial-volume blur, bias field, Rician noise ----
  std::vector<float> scratch;
  for (int c = 0; c < 4; ++c)
    detail::gaussian_blur(image + c * plane, D, H, W, details.blur, scratch);
  const double bias_amplitude = details.bias_field;
#pragma omp parallel for schedule(static)
  for (index_t d = 0; d < D; ++d) {
    complex<double> bias_row[4][kT];
    for (index_t h = 0; h < H; ++h) {
      for (int c = 0; c < 4; ++c) bias_noise[c].row(d, h, bias_row[c]);
      for (index_t w = 0; w < W; ++w) {
        const index_t voxel = (d * H + h) * W + w;
        const std::uint8_t here = anatomy[static_cast<std::size_t>(voxel)];
        if (here == detail::kOutside) {
          for (int c = 0; c < 4; ++c) image[c * plane + voxel] = 0.0f;
          continue;
        }
        for (int c = 0; c < 4; ++c) {
          const double bias =
              std::exp(bias_amplitude * std::clamp(bias_noise[c].at(bias_row[c], w), -3.0, 3.0));
          const double signal = scale[c] * image[c * plane + voxel] * bias;
          const double sigma = details.noise_sigma[c];
          const std::uint64_t key = noise_key + static_cast<std::uint64_t>((2 * c) * plane + voxel);
          const double re = signal + sigma * detail::hashed_normal(key);
          const double im = sigma * detail::hashed_normal(key + static_cast<std::uint64_t>(plane));
          image[c * plane + voxel] =
              static_cast<float>(std::max(std::sqrt(re * re + im * im), 1e-3));
        }
      }
    }
  }
  return result;
}

inline PhantomCase make_phantom(const PhantomOptions& options) {
  if (options.mode == PhantomMode::realistic) return make_realistic_phantom(options);
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
                     Tensor<std::uint8_t>(shape.with_channels(1)), PhantomDetails{}};
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
    const PhantomProgress& progress = {}, PhantomMode mode = PhantomMode::quick) {
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
    options.mode = mode;
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
