// Realistic phantom mode: seeds and threads, label values and their tissues, the share of
// cases without enhancing tumor and of multi-focal cases, skull stripping, per-modality
// tissue contrasts, the Rician noise level, mass effect, unlabelled enhancing distractors,
// and a written dataset read back through load_brats_case.
#include <omp.h>
#include <stdlib.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "revox/data/brats.hpp"
#include "revox/data/phantom.hpp"
#include "support/phantom.hpp"
#include "support/temp_dir.hpp"
#include "support/tensors.hpp"

using revox::index_t;
using revox::Shape5;
using revox::Tensor;
using revox::data::PhantomCase;
using revox::data::PhantomMode;
using revox::data::PhantomOptions;
using revox::data::Tissue;
using namespace revox::test;  // NOLINT(google-build-using-namespace)
using revox_test::TempDir;

namespace {

index_t count_label(const PhantomCase& p, std::uint8_t label) {
  index_t n = 0;
  for (index_t i = 0; i < p.labels.numel(); ++i) n += p.labels[i] == label ? 1 : 0;
  return n;
}

index_t count_tissue(const PhantomCase& p, Tissue tissue) {
  index_t n = 0;
  for (index_t i = 0; i < p.tissue.numel(); ++i)
    n += p.tissue[i] == static_cast<std::uint8_t>(tissue) ? 1 : 0;
  return n;
}


}  // namespace

TEST_CASE("phantom realistic: seeds reproduce, and the result does not depend on threads",
          "[data][phantom]") {
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const PhantomCase a = revox::data::make_phantom(realistic_options(7, 64, 60, 44));
  omp_set_num_threads(3);
  const PhantomCase b = revox::data::make_phantom(realistic_options(7, 64, 60, 44));
  const PhantomCase c = revox::data::make_phantom(realistic_options(8, 64, 60, 44));
  omp_set_num_threads(threads);
  CHECK(identical(a.image, b.image));
  CHECK(identical(a.labels, b.labels));
  CHECK(identical(a.tissue, b.tissue));
  CHECK_FALSE(identical(a.image, c.image));
  CHECK_FALSE(identical(a.labels, c.labels));
  // The realistic mode is a different generator from the quick one.
  PhantomOptions quick = realistic_options(7, 64, 60, 44);
  quick.mode = PhantomMode::quick;
  CHECK_FALSE(identical(a.image, revox::data::make_phantom(quick).image));
}

TEST_CASE("phantom realistic: labels, tissues, shares of no-ET and multi-focal cases",
          "[data][phantom]") {
  int without_et = 0, multifocal = 0, necrosis = 0, enhancing_without_necrosis = 0;
  std::set<double> snrs;
  const int cases = 16;
  for (int index = 1; index <= cases; ++index) {
    PhantomOptions options = realistic_options(revox::data::phantom_case_seed(5, index));
    options.enhancing = revox::data::phantom_case_enhancing(index);
    const PhantomCase p = revox::data::make_phantom(options);
    INFO("case " << index);
    REQUIRE(p.image.shape() == (Shape5{1, 4, 64, 96, 96}));
    REQUIRE(p.labels.shape() == (Shape5{1, 1, 64, 96, 96}));
    const index_t spatial = p.labels.numel();
    index_t wrong_tissue = 0, wrong_background = 0;
    for (index_t i = 0; i < spatial; ++i) {
      const std::uint8_t label = p.labels[i];
      const auto tissue = static_cast<Tissue>(p.tissue[i]);
      const bool tumor_tissue = tissue == Tissue::necrosis || tissue == Tissue::tumor_core ||
                                tissue == Tissue::enhancing || tissue == Tissue::edema;
      const bool ok = label == 0   ? !tumor_tissue
                      : label == 1 ? tissue == Tissue::necrosis || tissue == Tissue::tumor_core
                      : label == 2 ? tissue == Tissue::edema
                      : label == 4 ? tissue == Tissue::enhancing
                                   : false;
      wrong_tissue += ok ? 0 : 1;
      // Skull-stripped: exactly zero outside the brain, positive inside.
      for (int c = 0; c < 4; ++c) {
        const float v = p.image[c * spatial + i];
        wrong_background += (tissue == Tissue::background) == (v == 0.0f) ? 0 : 1;
      }
    }
    CHECK(wrong_tissue == 0);
    CHECK(wrong_background == 0);
    CHECK(count_label(p, 2) > 0);
    CHECK(count_label(p, 1) + count_label(p, 4) > 0);
    CHECK(p.details.enhancing == options.enhancing);
    if (options.enhancing) {
      CHECK(count_label(p, 4) > 0);
      if (!p.details.necrosis) ++enhancing_without_necrosis;
    } else {
      CHECK(count_label(p, 4) == 0);
      ++without_et;
    }
    multifocal += p.details.lesions > 1 ? 1 : 0;
    necrosis += p.details.necrosis ? 1 : 0;
    CHECK(p.details.snr >= 8.0);
    CHECK(p.details.snr <= 20.0);
    snrs.insert(p.details.snr);
  }
  CHECK(without_et == cases / 4);
  CHECK(multifocal >= 2);  // about a quarter (drawn per case)
  CHECK(multifocal <= 8);
  CHECK(necrosis >= 4);  // necrosis is sometimes absent, also in enhancing cases
  CHECK(enhancing_without_necrosis >= 1);
  CHECK(snrs.size() == static_cast<std::size_t>(cases));  // the SNR varies per case
}

TEST_CASE("phantom realistic: tissue contrasts per modality", "[data][phantom]") {
  for (std::uint64_t seed : {3u, 11u, 12u}) {
    INFO("seed " << seed);
    const PhantomCase p = revox::data::make_phantom(realistic_options(seed));
    const Tissue wm = Tissue::white_matter, gm = Tissue::grey_matter, csf = Tissue::csf,
                 edema = Tissue::edema, et = Tissue::enhancing;
    auto mean = [&](int c, Tissue t) { return tissue_mean(p, c, t); };
    // T1: white matter > grey matter > CSF.
    CHECK(mean(0, wm) > mean(0, gm));
    CHECK(mean(0, gm) > mean(0, csf));
    // T1ce: the enhancing tumor and the enhancing distractors outshine everything normal.
    if (count_tissue(p, et) > 0) {
      CHECK(mean(1, et) > 1.15 * mean(1, wm));
      CHECK(mean(1, et) > 1.3 * mean(1, gm));
    }
    CHECK(mean(1, Tissue::vessel) > 1.2 * mean(1, wm));
    // T2: CSF > grey matter > white matter; edema bright.
    CHECK(mean(2, csf) > mean(2, gm));
    CHECK(mean(2, gm) > mean(2, wm));
    CHECK(mean(2, edema) > 1.4 * mean(2, wm));
    // FLAIR: edema bright, CSF dark.
    CHECK(mean(3, edema) > 1.4 * mean(3, wm));
    CHECK(mean(3, csf) < 0.8 * mean(3, wm));
  }
}

TEST_CASE("phantom realistic: Rician noise at the drawn SNR", "[data][phantom]") {
  for (double snr : {0.0, 9.0, 18.0}) {
    PhantomOptions options = realistic_options(21);
    options.snr = snr;  // 0 draws it
    const PhantomCase p = revox::data::make_phantom(options);
    INFO("snr option " << snr << ", drawn " << p.details.snr);
    if (snr > 0.0) CHECK(p.details.snr == snr);
    const Shape5 s = p.labels.shape();
    const index_t spatial = s.spatial();
    auto is_wm = [&](index_t d, index_t h, index_t w) {
      return p.tissue[(d * s.h + h) * s.w + w] == static_cast<std::uint8_t>(Tissue::white_matter);
    };
    // Pairs of horizontally adjacent voxels deep in white matter: their difference is
    // dominated by the (independent) noise, so its variance is about 2 sigma^2.
    for (int c = 0; c < 4; ++c) {
      double sum2 = 0.0;
      index_t pairs = 0;
      for (index_t d = 1; d + 1 < s.d; ++d)
        for (index_t h = 1; h + 1 < s.h; ++h)
          for (index_t w = 1; w + 2 < s.w; ++w) {
            if (!(is_wm(d, h, w) && is_wm(d, h, w + 1) && is_wm(d, h, w - 1) &&
                  is_wm(d, h, w + 2) && is_wm(d - 1, h, w) && is_wm(d + 1, h, w) &&
                  is_wm(d, h - 1, w) && is_wm(d, h + 1, w))) {
              continue;
            }
            const index_t i = (d * s.h + h) * s.w + w;
            const double diff = p.image[c * spatial + i + 1] - p.image[c * spatial + i];
            sum2 += diff * diff;
            ++pairs;
          }
      REQUIRE(pairs > 1000);
      const double sigma = std::sqrt(sum2 / static_cast<double>(pairs) / 2.0);
      INFO("modality " << c << ": measured sigma " << sigma << ", expected "
                       << p.details.noise_sigma[c]);
      CHECK(p.details.noise_sigma[c] == Approx(p.details.white_matter[c] / p.details.snr));
      CHECK(sigma == Approx(p.details.noise_sigma[c]).epsilon(0.15));
    }
  }
}

TEST_CASE("phantom realistic: tumors displace the anatomy", "[data][phantom]") {
  int moved_cases = 0;
  for (std::uint64_t seed : {2u, 4u, 6u}) {
    PhantomOptions options = realistic_options(seed);
    const PhantomCase displaced = revox::data::make_phantom(options);
    options.mass_effect = false;
    const PhantomCase still = revox::data::make_phantom(options);
    // The tumor core is the same; the normal anatomy around it differs.
    index_t core_differs = 0, anatomy_differs = 0, brain = 0;
    for (index_t i = 0; i < still.labels.numel(); ++i) {
      const bool core_a = displaced.labels[i] == 1 || displaced.labels[i] == 4;
      const bool core_b = still.labels[i] == 1 || still.labels[i] == 4;
      core_differs += core_a != core_b ? 1 : 0;
      brain += still.tissue[i] != 0 ? 1 : 0;
      if (!core_a && displaced.labels[i] != 2 && still.labels[i] != 2) {
        anatomy_differs += displaced.tissue[i] != still.tissue[i] ? 1 : 0;
      }
    }
    CHECK(core_differs == 0);
    INFO("seed " << seed << ": " << anatomy_differs << " of " << brain << " brain voxels moved");
    CHECK(anatomy_differs < brain / 4);
    moved_cases += anatomy_differs > brain / 200 ? 1 : 0;
  }
  CHECK(moved_cases == 3);
}

TEST_CASE("phantom realistic: enhancing distractors lie outside the tumor, unlabelled",
          "[data][phantom]") {
  for (std::uint64_t seed : {1u, 9u}) {
    PhantomOptions options = realistic_options(seed);
    const PhantomCase p = revox::data::make_phantom(options);
    const index_t spatial = p.labels.numel();
    index_t vessels = 0, labelled = 0;
    for (index_t i = 0; i < spatial; ++i) {
      if (p.tissue[i] != static_cast<std::uint8_t>(Tissue::vessel)) continue;
      ++vessels;
      labelled += p.labels[i] != 0 ? 1 : 0;
    }
    CHECK(vessels > 50);
    CHECK(labelled == 0);
    CHECK(count_tissue(p, Tissue::wm_hyperintensity) + vessels > 0);
    options.distractors = false;
    const PhantomCase plain = revox::data::make_phantom(options);
    CHECK(count_tissue(plain, Tissue::vessel) == 0);
    CHECK(count_tissue(plain, Tissue::wm_hyperintensity) == 0);
    CHECK(identical(plain.labels, p.labels));
  }
}

TEST_CASE("phantom realistic: written as a BraTS dataset and read back", "[data][phantom][nifti]") {
  const TempDir scratch("revox_phantom_real");
  const std::filesystem::path& root = scratch.path();
  const revox::data::PhantomSize size{48, 52, 36};
  for (auto naming : {revox::data::BratsNaming::brats2017, revox::data::BratsNaming::brats2023}) {
    const auto folder = root / (naming == revox::data::BratsNaming::brats2017 ? "2020" : "2023");
    revox::data::write_phantom_dataset(folder, 4, size, naming, 13, {}, PhantomMode::realistic);
    const auto cases = revox::data::discover_brats_cases(folder);
    REQUIRE(cases.size() == 4);
    for (int index = 1; index <= 4; ++index) {
      PhantomOptions options = realistic_options(revox::data::phantom_case_seed(13, index),
                                                 size.width, size.height, size.depth);
      options.enhancing = revox::data::phantom_case_enhancing(index);
      const PhantomCase expected = revox::data::make_phantom(options);
      const auto loaded = revox::data::load_brats_case(cases[static_cast<std::size_t>(index - 1)]);
      INFO(loaded.id);
      CHECK(identical(loaded.image, expected.image));
      REQUIRE(loaded.labels.has_value());
      const std::uint8_t et = naming == revox::data::BratsNaming::brats2017 ? 4 : 3;
      index_t wrong = 0;
      for (index_t i = 0; i < expected.labels.numel(); ++i) {
        const std::uint8_t label = expected.labels[i] == 4 ? et : expected.labels[i];
        wrong += (*loaded.labels)[i] == label ? 0 : 1;
      }
      CHECK(wrong == 0);
    }
  }
}
