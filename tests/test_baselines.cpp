// Tests for revox-brats' simple baselines (examples/brats/baselines.hpp, baseline_run.hpp):
// the local brain means against a brute-force sum, the FLAIR threshold search against
// directly counted Dice and on data with a known best threshold, the Gaussian classifier's
// fit against known means and covariances and on a separable toy volume, the written label
// maps' grid and geometry, and the errors for a bad split file.
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "revox/core/random.hpp"
#include "revox/io/nifti.hpp"
#include "support/temp_dir.hpp"

#include "../examples/brats/baseline_run.hpp"
#include "../examples/brats/baselines.hpp"

namespace fs = std::filesystem;
namespace data = revox::data;
using revox::index_t;
using revox::Shape5;
using revox::Tensor;
using namespace revox::brats;

namespace {

// Brute-force WT Dice of "z > t on brain voxels" (empty vs empty scores 1).
double threshold_dice(const std::vector<float>& z, const std::vector<std::uint8_t>& brain,
                      const std::vector<std::uint8_t>& wt, double t) {
  index_t tp = 0, fp = 0, fn = 0;
  for (std::size_t i = 0; i < z.size(); ++i) {
    const bool p = brain[i] && static_cast<double>(z[i]) > t;
    tp += p && wt[i];
    fp += p && !wt[i];
    fn += !p && wt[i];
  }
  return 2 * tp + fp + fn == 0
             ? 1.0
             : 2.0 * static_cast<double>(tp) / static_cast<double>(2 * tp + fp + fn);
}

// A symmetric positive definite n x n matrix with entries of order 1.
std::vector<double> random_covariance(std::size_t n, revox::Rng& rng) {
  std::vector<double> a(n * n), c(n * n, 0.0);
  for (auto& v : a) v = rng.uniform(-1.0, 1.0);
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = 0; j < n; ++j) {
      for (std::size_t k = 0; k < n; ++k) c[i * n + j] += a[i * n + k] * a[j * n + k];
    }
    c[i * n + i] += 0.5;
  }
  return c;
}

// Lower Cholesky factor of an SPD matrix (for sampling).
std::vector<double> cholesky(const std::vector<double>& c, std::size_t n) {
  std::vector<double> l(n * n, 0.0);
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = 0; j <= i; ++j) {
      double v = c[i * n + j];
      for (std::size_t k = 0; k < j; ++k) v -= l[i * n + k] * l[j * n + k];
      l[i * n + j] = i == j ? std::sqrt(v) : v / l[j * n + j];
    }
  }
  return l;
}

// A toy case: brain a box inside a zero border; labels in blocks along x; each class has
// its own intensity on each modality plus a little noise. `et` is the ET label to write.
struct ToyCase {
  Tensor<float> image;
  Tensor<std::uint8_t> labels;
};

ToyCase toy_case(index_t d, index_t h, index_t w, std::uint64_t seed, std::uint8_t et) {
  revox::Rng rng(seed);
  ToyCase c{Tensor<float>::zeros(Shape5{1, 4, d, h, w}),
            Tensor<std::uint8_t>::zeros(Shape5{1, 1, d, h, w})};
  // Per class (background, edema, NCR, ET): t1, t1ce, t2, flair intensities.
  const float intensity[4][4] = {{100, 100, 100, 100},
                                 {90, 95, 180, 220},
                                 {60, 70, 200, 160},
                                 {95, 260, 150, 170}};
  const index_t voxels = d * h * w;
  for (index_t z = 1; z < d - 1; ++z) {
    for (index_t y = 1; y < h - 1; ++y) {
      for (index_t x = 1; x < w - 1; ++x) {
        const index_t i = (z * h + y) * w + x;
        // Four slabs along x inside the brain, each at least 3 voxels wide.
        const index_t slab = std::min<index_t>(3, (x - 1) * 4 / (w - 2));
        const std::array<std::uint8_t, 4> label_of_slab = {0, 2, 1, et};
        c.labels[i] = label_of_slab[static_cast<std::size_t>(slab)];
        for (index_t m = 0; m < 4; ++m) {
          c.image[m * voxels + i] =
              intensity[slab][m] + static_cast<float>(rng.normal() * 2.0);
        }
      }
    }
  }
  return c;
}

// Writes a case folder in the BraTS 2020 naming with `geometry`.
void write_case(const fs::path& root, const std::string& id, const ToyCase& c,
                const revox::io::NiftiGeometry& geometry) {
  const fs::path folder = root / id;
  fs::create_directories(folder);
  const Shape5 s = c.image.shape();
  const std::array<const char*, 4> names = {"t1", "t1ce", "t2", "flair"};
  for (index_t m = 0; m < 4; ++m) {
    Tensor<float> volume(Shape5{1, 1, s.d, s.h, s.w});
    std::copy(c.image.data() + m * s.spatial(), c.image.data() + (m + 1) * s.spatial(),
              volume.data());
    revox::io::write_nifti(folder / (id + "_" + names[static_cast<std::size_t>(m)] + ".nii.gz"),
                           volume, geometry);
  }
  revox::io::write_nifti_labels(folder / (id + "_seg.nii.gz"), c.labels, geometry);
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
}

std::string error_of(const BaselineArgs& args) {
  std::ostringstream log;
  try {
    run_baselines(args, log);
  } catch (const revox::Error& error) {
    return error.what();
  }
  return "no error";
}

}  // namespace

TEST_CASE("local brain means match a brute-force box average", "[baselines]") {
  const data::Size3 size{5, 6, 7};
  const index_t voxels = 5 * 6 * 7;
  revox::Rng rng(3);
  std::vector<float> values(static_cast<std::size_t>(voxels));
  std::vector<std::uint8_t> brain(static_cast<std::size_t>(voxels));
  for (index_t i = 0; i < voxels; ++i) {
    values[static_cast<std::size_t>(i)] = static_cast<float>(rng.uniform(-2.0, 2.0));
    brain[static_cast<std::size_t>(i)] = rng.uniform01() < 0.7 ? 1 : 0;
  }
  for (index_t radius : {0, 1, 2}) {
    const std::vector<float> mean = local_brain_mean(values.data(), brain, size, radius);
    for (index_t z = 0; z < 5; ++z) {
      for (index_t y = 0; y < 6; ++y) {
        for (index_t x = 0; x < 7; ++x) {
          const auto i = static_cast<std::size_t>((z * 6 + y) * 7 + x);
          double sum = 0.0;
          int count = 0;
          for (index_t dz = -radius; dz <= radius; ++dz) {
            for (index_t dy = -radius; dy <= radius; ++dy) {
              for (index_t dx = -radius; dx <= radius; ++dx) {
                const index_t zz = z + dz, yy = y + dy, xx = x + dx;
                if (zz < 0 || zz >= 5 || yy < 0 || yy >= 6 || xx < 0 || xx >= 7) continue;
                const auto j = static_cast<std::size_t>((zz * 6 + yy) * 7 + xx);
                if (!brain[j]) continue;
                sum += values[j];
                ++count;
              }
            }
          }
          INFO("radius " << radius << " at (" << x << ", " << y << ", " << z << ")");
          const double expected = brain[i] ? sum / count : 0.0;
          REQUIRE(mean[i] == Approx(expected).margin(1e-5));
        }
      }
    }
  }
}

TEST_CASE("the FLAIR threshold search counts Dice exactly and finds a known threshold",
          "[baselines]") {
  revox::Rng rng(11);
  const std::vector<double> grid = default_threshold_grid();
  SECTION("overlapping intensities: every grid value's mean Dice matches direct counting") {
    std::vector<ThresholdCounts> counts;
    std::vector<std::vector<float>> zs;
    std::vector<std::vector<std::uint8_t>> brains, wts;
    for (int c = 0; c < 4; ++c) {
      const std::size_t voxels = 3000;
      std::vector<float> z(voxels);
      std::vector<std::uint8_t> brain(voxels), wt(voxels);
      for (std::size_t i = 0; i < voxels; ++i) {
        brain[i] = rng.uniform01() < 0.8;
        wt[i] = brain[i] && c != 3 && rng.uniform01() < 0.15;  // case 3: no tumour
        z[i] = brain[i] ? static_cast<float>(rng.normal() + (wt[i] ? 2.0 : 0.0)) : 0.0f;
      }
      counts.push_back(count_above(z.data(), brain, wt, grid));
      zs.push_back(z);
      brains.push_back(brain);
      wts.push_back(wt);
    }
    const ThresholdChoice choice = choose_threshold(counts, grid);
    for (std::size_t j = 0; j < grid.size(); j += 7) {
      double mean = 0.0;
      for (std::size_t c = 0; c < 4; ++c) mean += threshold_dice(zs[c], brains[c], wts[c], grid[j]);
      INFO("threshold " << grid[j]);
      REQUIRE(choice.mean_dice_at[j] == Approx(mean / 4).epsilon(1e-12));
    }
    const auto best = std::max_element(choice.mean_dice_at.begin(), choice.mean_dice_at.end());
    CHECK(choice.mean_dice == *best);
    CHECK(choice.threshold == grid[static_cast<std::size_t>(best - choice.mean_dice_at.begin())]);
    // Tumour 2 standard deviations brighter: the best cut lies between the two modes.
    CHECK(choice.threshold > 0.5);
    CHECK(choice.threshold < 2.5);
  }
  SECTION("separated intensities: the first grid value above the brightest healthy voxel") {
    std::vector<ThresholdCounts> counts;
    float brightest_healthy = -10.0f;
    for (int c = 0; c < 3; ++c) {
      const std::size_t voxels = 2000;
      std::vector<float> z(voxels);
      std::vector<std::uint8_t> brain(voxels, 1), wt(voxels);
      for (std::size_t i = 0; i < voxels; ++i) {
        wt[i] = rng.uniform01() < 0.2;
        z[i] = static_cast<float>(wt[i] ? rng.uniform(2.2, 4.0) : rng.uniform(-2.0, 1.3));
        if (!wt[i]) brightest_healthy = std::max(brightest_healthy, z[i]);
      }
      counts.push_back(count_above(z.data(), brain, wt, grid));
    }
    const ThresholdChoice choice = choose_threshold(counts, grid);
    const double expected = *std::lower_bound(grid.begin(), grid.end(),
                                              static_cast<double>(brightest_healthy));
    CHECK(choice.threshold == expected);
    CHECK(choice.mean_dice == 1.0);
  }
}

TEST_CASE("the Gaussian classifier recovers known means, covariances and priors",
          "[baselines]") {
  constexpr std::size_t n = 8;
  revox::Rng rng(5);
  const std::array<std::int64_t, 3> samples = {150000, 60000, 90000};
  std::array<std::vector<double>, 3> means, covariances;
  GaussianStatistics statistics(3, n);
  for (std::size_t k = 0; k < 3; ++k) {
    means[k].resize(n);
    for (auto& m : means[k]) m = rng.uniform(-3.0, 3.0);
    covariances[k] = random_covariance(n, rng);
    const std::vector<double> l = cholesky(covariances[k], n);
    std::array<double, n> e{}, x{};
    for (std::int64_t s = 0; s < samples[k]; ++s) {
      for (auto& v : e) v = rng.normal();
      for (std::size_t a = 0; a < n; ++a) {
        x[a] = means[k][a];
        for (std::size_t b = 0; b <= a; ++b) x[a] += l[a * n + b] * e[b];
      }
      statistics.add(k, x.data());
    }
  }
  const GaussianClassifier model = GaussianClassifier::fit(statistics, 0.0);
  REQUIRE(model.classes().size() == 3);
  for (std::size_t k = 0; k < 3; ++k) {
    const GaussianClass& g = model.classes()[k];
    INFO("class " << k);
    CHECK(g.present);
    CHECK(g.count == samples[k]);
    CHECK(g.prior == Approx(static_cast<double>(samples[k]) / 300000.0).epsilon(1e-12));
    for (std::size_t a = 0; a < n; ++a) {
      // Standard error of a mean: sqrt(var / samples) < 0.01 here.
      CHECK(g.mean[a] == Approx(means[k][a]).margin(0.05));
      for (std::size_t b = 0; b < n; ++b) {
        CHECK(g.covariance[a * n + b] == Approx(covariances[k][a * n + b]).margin(0.08));
      }
    }
  }
  // A point at a class's mean is classified as that class (the means are far apart).
  for (std::size_t k = 0; k < 3; ++k) CHECK(model.classify(means[k].data()) == k);
}

TEST_CASE("the Gaussian classifier segments a separable toy volume perfectly", "[baselines]") {
  for (const auto convention :
       {data::LabelConvention::brats2017, data::LabelConvention::brats2023}) {
    const std::uint8_t et = data::enhancing_label(convention);
    ToyCase train = toy_case(10, 12, 22, 1, et);
    ToyCase test = toy_case(10, 12, 22, 2, et);
    const CaseFeatures train_features = case_features(train.image, "train", 1);
    GaussianStatistics statistics(kBaselineClasses, kBaselineFeatures);
    statistics.add_case(train_features, train.labels, convention);
    const GaussianClassifier model = GaussianClassifier::fit(statistics);
    for (std::size_t k = 0; k < kBaselineClasses; ++k) CHECK(model.classes()[k].present);
    const CaseFeatures test_features = case_features(test.image, "test", 1);
    const Tensor<std::uint8_t> predicted = gaussian_labels(test_features, model, convention);
    REQUIRE(predicted.shape() == test.labels.shape());
    index_t wrong = 0, et_voxels = 0;
    for (index_t i = 0; i < predicted.numel(); ++i) {
      wrong += predicted[i] != test.labels[i];
      et_voxels += predicted[i] == et;
    }
    INFO(data::to_string(convention));
    CHECK(wrong == 0);
    CHECK(et_voxels > 0);
    // The brain's zero border is background: the brain mask comes from the raw image.
    CHECK(test_features.brain[0] == 0);
  }
}

TEST_CASE("revox-brats baseline writes label maps on each hold-out case's grid and geometry",
          "[baselines]") {
  revox_test::TempDir dir("revox_baselines");
  revox::io::NiftiGeometry geometry = revox::io::default_geometry({1.5, 1.25, 2.0});
  geometry.qoffset_x = -20.0;
  geometry.qoffset_y = 12.5;
  geometry.qoffset_z = 7.0;
  geometry.srow[0][3] = -20.0;
  geometry.srow[1][3] = 12.5;
  geometry.srow[2][3] = 7.0;
  const std::vector<std::string> ids = {"BraTS20_Training_001", "BraTS20_Training_002",
                                        "BraTS20_Training_003"};
  for (std::size_t i = 0; i < ids.size(); ++i) {
    write_case(dir / "raw", ids[i], toy_case(9, 11, 20, 10 + i, 4), geometry);
  }
  write_text(dir / "split.json",
             "{\"seed\": 1, \"train\": [\"BraTS20_Training_001\", \"BraTS20_Training_003\"],"
             " \"holdout\": [\"BraTS20_Training_002\"]}");
  BaselineArgs args;
  args.data = (dir / "raw").string();
  args.split = (dir / "split.json").string();
  args.out = (dir / "out").string();
  args.radius = 1;
  std::ostringstream log;
  const BaselineResult result = run_baselines(args, log);
  INFO(log.str());
  CHECK(result.scored == 1);
  CHECK(result.gaussian_dice[0] == 1.0);
  CHECK(result.gaussian_dice[2] == 1.0);
  CHECK(result.flair_threshold_dice[0] > 0.5);
  const revox::io::NiftiVolume truth =
      revox::io::read_nifti(dir / "raw" / ids[1] / (ids[1] + "_seg.nii.gz"));
  for (const char* folder : kBaselineFolders) {
    const fs::path path = dir / "out" / folder / (ids[1] + ".nii.gz");
    INFO(path.string());
    REQUIRE(fs::is_regular_file(path));
    const revox::io::NiftiVolume written = revox::io::read_nifti(path);
    CHECK(written.data.shape() == truth.data.shape());
    CHECK(written.geometry.matches(geometry, 1e-6));
    std::array<index_t, 5> histogram{};
    for (index_t i = 0; i < written.data.numel(); ++i) {
      const auto label = static_cast<int>(written.data[i]);
      REQUIRE((label == 0 || label == 1 || label == 2 || label == 4));
      ++histogram[static_cast<std::size_t>(label == 4 ? 3 : label)];
    }
    if (std::string(folder) == "flair_threshold") {
      CHECK(histogram[1] == 0);  // WT only: written as edema
      CHECK(histogram[3] == 0);
      CHECK(histogram[2] > 0);
    }
  }
  // The training cases are not predicted, and a second run refuses to overwrite.
  CHECK_FALSE(fs::exists(dir / "out" / "gaussian" / (ids[0] + ".nii.gz")));
  CHECK(fs::is_regular_file(dir / "out" / "baselines.json"));
  CHECK_THAT(error_of(args), Catch::Contains("already exist") && Catch::Contains("--overwrite"));
  args.overwrite = true;
  CHECK_NOTHROW(run_baselines(args, log));
}

TEST_CASE("revox-brats baseline --test-data segments a folder kept apart, not the hold-out",
          "[baselines]") {
  revox_test::TempDir dir("revox_baselines_test_data");
  const revox::io::NiftiGeometry geometry = revox::io::default_geometry();
  write_case(dir / "raw", "BraTS20_Training_001", toy_case(9, 11, 20, 10, 4), geometry);
  write_case(dir / "raw", "BraTS20_Training_002", toy_case(9, 11, 20, 11, 4), geometry);
  write_case(dir / "test", "BraTS20_Training_041", toy_case(9, 11, 20, 12, 4), geometry);
  write_case(dir / "test", "BraTS20_Training_042", toy_case(9, 11, 20, 13, 4), geometry);
  write_text(dir / "split.json",
             "{\"seed\": 1, \"train\": [\"BraTS20_Training_001\"],"
             " \"holdout\": [\"BraTS20_Training_002\"]}");
  BaselineArgs args;
  args.data = (dir / "raw").string();
  args.split = (dir / "split.json").string();
  args.test_data = (dir / "test").string();
  args.out = (dir / "out").string();
  args.radius = 1;
  std::ostringstream log;
  const BaselineResult result = run_baselines(args, log);
  INFO(log.str());
  CHECK(result.scored == 2);
  CHECK(result.gaussian_dice[0] == 1.0);
  for (const char* folder : kBaselineFolders) {
    CHECK(fs::is_regular_file(dir / "out" / folder / "BraTS20_Training_041.nii.gz"));
    CHECK(fs::is_regular_file(dir / "out" / folder / "BraTS20_Training_042.nii.gz"));
    CHECK_FALSE(fs::exists(dir / "out" / folder / "BraTS20_Training_002.nii.gz"));
  }
  args.test_data = (dir / "empty").string();
  fs::create_directories(dir / "empty");
  args.out = (dir / "out2").string();
  CHECK_THAT(error_of(args), Catch::Contains((dir / "empty").string()));
}

TEST_CASE("revox-brats baseline names the split file in its errors", "[baselines]") {
  revox_test::TempDir dir("revox_baselines_errors");
  write_case(dir / "raw", "BraTS20_Training_001", toy_case(6, 6, 8, 1, 4),
             revox::io::default_geometry());
  BaselineArgs args;
  args.data = (dir / "raw").string();
  args.out = (dir / "out").string();
  const std::string split = (dir / "split.json").string();
  args.split = split;

  SECTION("missing") {
    const std::string message = error_of(args);
    CHECK_THAT(message, Catch::Contains(split) && Catch::Contains("does not exist"));
  }
  SECTION("not JSON") {
    write_text(split, "{\"train\": [");
    CHECK_THAT(error_of(args), Catch::Contains(split) && Catch::Contains("not valid JSON"));
  }
  SECTION("no hold-out list") {
    write_text(split, "{\"train\": [\"BraTS20_Training_001\"]}");
    CHECK_THAT(error_of(args), Catch::Contains(split) && Catch::Contains("\"holdout\""));
  }
  SECTION("a case listed twice") {
    write_text(split, "{\"train\": [\"BraTS20_Training_001\"], \"holdout\": "
                      "[\"BraTS20_Training_001\"]}");
    CHECK_THAT(error_of(args), Catch::Contains(split) && Catch::Contains("listed twice"));
  }
  SECTION("ids not in the data") {
    write_text(split, "{\"train\": [\"BraTS20_Training_001\"], \"holdout\": "
                      "[\"BraTS20_Training_077\"]}");
    const std::string message = error_of(args);
    CHECK_THAT(message, Catch::Contains(split) && Catch::Contains("BraTS20_Training_077") &&
                            Catch::Contains("hold-out") && Catch::Contains(args.data));
  }
  CHECK_FALSE(fs::exists(dir / "out" / "baselines.json"));
}
