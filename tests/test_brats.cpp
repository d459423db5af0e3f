// BraTS cases: discovery in every release layout (from empty placeholder files, since
// discovery must not read volumes), label conventions, region targets and their inverse.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "revox/core/tensor.hpp"
#include "revox/data/brats.hpp"
#include "revox/data/preprocess.hpp"

#include "support/temp_dir.hpp"

namespace fs = std::filesystem;
using revox::index_t;
using revox::Shape5;
using revox::Tensor;
using revox::data::BratsCase;
using revox::data::BratsNaming;
using revox::data::DiscoverOptions;
using revox::data::LabelConvention;

namespace {

class TempDir : public revox_test::TempDir {
 public:
  TempDir() : revox_test::TempDir("revox_test_brats") {}
};

void touch(const fs::path& path) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary).flush();
}

// A case folder of empty files: <folder>/<id><sep><suffix><ext> for each suffix.
fs::path make_case(const fs::path& parent, const std::string& id, BratsNaming naming,
                   const std::string& ext, bool with_seg = true) {
  const fs::path folder = parent / id;
  const std::string sep = naming == BratsNaming::brats2017 ? "_" : "-";
  for (const char* suffix : revox::data::modality_suffixes(naming)) {
    touch(folder / (id + sep + suffix + ext));
  }
  if (with_seg) touch(folder / (id + sep + "seg" + ext));
  return folder;
}

Tensor<std::uint8_t> label_volume(const std::vector<std::uint8_t>& values, Shape5 shape) {
  Tensor<std::uint8_t> t(shape);
  for (index_t i = 0; i < t.numel(); ++i) {
    t[i] = values[static_cast<std::size_t>(i) % values.size()];
  }
  return t;
}

}  // namespace

TEST_CASE("discover_brats_cases finds the 2020 and 2021 layouts, sorted, skipping files",
          "[data][brats]") {
  TempDir dir;
  make_case(dir.path(), "BraTS20_Training_002", BratsNaming::brats2017, ".nii.gz");
  make_case(dir.path(), "BraTS20_Training_001", BratsNaming::brats2017, ".nii");  // Kaggle
  make_case(dir.path(), "BraTS20_Validation_001", BratsNaming::brats2017, ".nii.gz", false);
  touch(dir.path() / "name_mapping.csv");
  touch(dir.path() / "survival_info.csv");
  fs::create_directories(dir.path() / ".ipynb_checkpoints");

  const auto cases = revox::data::discover_brats_cases(dir.path());
  REQUIRE(cases.size() == 3);
  CHECK(cases[0].id == "BraTS20_Training_001");
  CHECK(cases[1].id == "BraTS20_Training_002");
  CHECK(cases[2].id == "BraTS20_Validation_001");
  const fs::path first = dir.path() / "BraTS20_Training_001";
  CHECK(cases[0].folder == first);
  CHECK(cases[0].modalities[0] == first / "BraTS20_Training_001_t1.nii");
  CHECK(cases[0].modalities[1] == first / "BraTS20_Training_001_t1ce.nii");
  CHECK(cases[0].modalities[2] == first / "BraTS20_Training_001_t2.nii");
  CHECK(cases[0].modalities[3] == first / "BraTS20_Training_001_flair.nii");
  REQUIRE(cases[0].segmentation.has_value());
  CHECK(*cases[0].segmentation == first / "BraTS20_Training_001_seg.nii");
  CHECK(cases[0].naming == BratsNaming::brats2017);
  CHECK(cases[1].modalities[3].filename() == "BraTS20_Training_002_flair.nii.gz");
  CHECK_FALSE(cases[2].segmentation.has_value());  // fine for prediction

  DiscoverOptions training;
  training.require_segmentation = true;
  CHECK_THROWS_WITH(revox::data::discover_brats_cases(dir.path(), training),
                    Catch::Contains("BraTS20_Validation_001") &&
                        Catch::Contains("BraTS20_Validation_001_seg.nii.gz"));

  TempDir dir2021;
  make_case(dir2021.path(), "BraTS2021_00000", BratsNaming::brats2017, ".nii.gz");
  make_case(dir2021.path(), "BraTS2021_00002", BratsNaming::brats2017, ".nii.gz");
  const auto cases2021 = revox::data::discover_brats_cases(dir2021.path());
  REQUIRE(cases2021.size() == 2);
  CHECK(cases2021[1].modalities[1].filename() == "BraTS2021_00002_t1ce.nii.gz");
}

TEST_CASE("discover_brats_cases finds 2018/2019 cases in HGG and LGG folders",
          "[data][brats]") {
  TempDir dir;
  const fs::path release = dir.path() / "MICCAI_BraTS_2019_Data_Training";
  make_case(release / "LGG", "BraTS19_2013_0_1", BratsNaming::brats2017, ".nii.gz");
  make_case(release / "HGG", "BraTS19_CBICA_AAB_1", BratsNaming::brats2017, ".nii.gz");
  make_case(release / "HGG", "BraTS19_2013_10_1", BratsNaming::brats2017, ".nii.gz");
  touch(release / "name_mapping.csv");
  const auto cases = revox::data::discover_brats_cases(dir.path());
  REQUIRE(cases.size() == 3);
  CHECK(cases[0].id == "BraTS19_2013_0_1");
  CHECK(cases[0].folder == release / "LGG" / "BraTS19_2013_0_1");
  CHECK(cases[1].id == "BraTS19_2013_10_1");
  CHECK(cases[2].id == "BraTS19_CBICA_AAB_1");
  CHECK(cases[2].segmentation->filename() == "BraTS19_CBICA_AAB_1_seg.nii.gz");

  // The same id under HGG and LGG is an error naming both folders.
  make_case(release / "LGG", "BraTS19_CBICA_AAB_1", BratsNaming::brats2017, ".nii.gz");
  CHECK_THROWS_WITH(revox::data::discover_brats_cases(dir.path()),
                    Catch::Contains("BraTS19_CBICA_AAB_1 appears twice") &&
                        Catch::Contains("HGG") && Catch::Contains("LGG"));
}

TEST_CASE("discover_brats_cases maps the 2023 names to t1, t1ce, t2, flair",
          "[data][brats]") {
  TempDir dir;
  make_case(dir.path(), "BraTS-GLI-00000-000", BratsNaming::brats2023, ".nii.gz");
  make_case(dir.path(), "BraTS-GLI-00002-101", BratsNaming::brats2023, ".nii");
  const auto cases = revox::data::discover_brats_cases(dir.path());
  REQUIRE(cases.size() == 2);
  const BratsCase& c = cases[0];
  CHECK(c.id == "BraTS-GLI-00000-000");
  CHECK(c.naming == BratsNaming::brats2023);
  CHECK(c.modalities[0].filename() == "BraTS-GLI-00000-000-t1n.nii.gz");
  CHECK(c.modalities[1].filename() == "BraTS-GLI-00000-000-t1c.nii.gz");
  CHECK(c.modalities[2].filename() == "BraTS-GLI-00000-000-t2w.nii.gz");
  CHECK(c.modalities[3].filename() == "BraTS-GLI-00000-000-t2f.nii.gz");
  CHECK(c.segmentation->filename() == "BraTS-GLI-00000-000-seg.nii.gz");
  CHECK(cases[1].modalities[3].filename() == "BraTS-GLI-00002-101-t2f.nii");
  CHECK(revox::data::default_label_convention(c.naming) == LabelConvention::brats2023);
}

TEST_CASE("discover_brats_cases accepts a root that is one case folder", "[data][brats]") {
  TempDir dir;
  const fs::path folder =
      make_case(dir.path(), "BraTS20_Training_010", BratsNaming::brats2017, ".nii.gz");
  const auto cases = revox::data::discover_brats_cases(folder);
  REQUIRE(cases.size() == 1);
  CHECK(cases[0].id == "BraTS20_Training_010");
  CHECK(cases[0].modalities[2] == folder / "BraTS20_Training_010_t2.nii.gz");
}

TEST_CASE("discover_brats_cases explains missing, empty and ambiguous folders",
          "[data][brats]") {
  TempDir dir;
  CHECK_THROWS_WITH(revox::data::discover_brats_cases(dir.path() / "nope"),
                    Catch::Contains("nope") && Catch::Contains("does not exist"));
  touch(dir.path() / "name_mapping.csv");
  CHECK_THROWS_WITH(revox::data::discover_brats_cases(dir.path() / "name_mapping.csv"),
                    Catch::Contains("is not a folder"));
  fs::create_directories(dir.path() / "HGG");
  CHECK_THROWS_WITH(revox::data::discover_brats_cases(dir.path()),
                    Catch::Contains("no BraTS case folder under") &&
                        Catch::Contains(dir.path().string()));

  SECTION("a missing modality names the folder and the file") {
    const fs::path folder =
        make_case(dir.path(), "BraTS20_Training_003", BratsNaming::brats2017, ".nii.gz");
    fs::remove(folder / "BraTS20_Training_003_t1ce.nii.gz");
    CHECK_THROWS_WITH(revox::data::discover_brats_cases(dir.path()),
                      Catch::Contains(folder.string()) && Catch::Contains("modality t1ce") &&
                          Catch::Contains("BraTS20_Training_003_t1ce.nii.gz"));
  }
  SECTION("a missing 2023 modality is named by its 2023 file name") {
    const fs::path folder =
        make_case(dir.path(), "BraTS-GLI-00005-000", BratsNaming::brats2023, ".nii.gz");
    fs::remove(folder / "BraTS-GLI-00005-000-t2f.nii.gz");
    CHECK_THROWS_WITH(revox::data::discover_brats_cases(dir.path()),
                      Catch::Contains("BraTS-GLI-00005-000-t2f.nii.gz"));
  }
  SECTION("files not named after the folder") {
    touch(dir.path() / "renamed_case" / "BraTS20_Training_004_t1.nii.gz");
    CHECK_THROWS_WITH(revox::data::discover_brats_cases(dir.path()),
                      Catch::Contains("renamed_case_t1.nii.gz") &&
                          Catch::Contains("BraTS20_Training_004_t1.nii.gz"));
  }
  SECTION("both x.nii and x.nii.gz") {
    const fs::path folder =
        make_case(dir.path(), "BraTS20_Training_005", BratsNaming::brats2017, ".nii.gz");
    touch(folder / "BraTS20_Training_005_t2.nii");
    CHECK_THROWS_WITH(revox::data::discover_brats_cases(dir.path()),
                      Catch::Contains("BraTS20_Training_005_t2.nii") &&
                          Catch::Contains("keep one of them"));
  }
}

TEST_CASE("BraTS20_Training_355's misnamed segmentation: a clear message or an opt-in alias",
          "[data][brats]") {
  TempDir dir;
  const fs::path folder = make_case(dir.path(), "BraTS20_Training_355",
                                    BratsNaming::brats2017, ".nii", /*with_seg=*/false);
  touch(folder / "W39_1998.09.19_Segm.nii");
  CHECK_THROWS_WITH(revox::data::discover_brats_cases(dir.path()),
                    Catch::Contains("BraTS20_Training_355") &&
                        Catch::Contains("W39_1998.09.19_Segm.nii") &&
                        Catch::Contains("BraTS20_Training_355_seg.nii") &&
                        Catch::Contains("accept_known_segmentation_aliases"));
  DiscoverOptions options;
  options.accept_known_segmentation_aliases = true;
  options.require_segmentation = true;
  const auto cases = revox::data::discover_brats_cases(dir.path(), options);
  REQUIRE(cases.size() == 1);
  REQUIRE(cases[0].segmentation.has_value());
  CHECK(*cases[0].segmentation == folder / "W39_1998.09.19_Segm.nii");

  // Once renamed, the regular name wins and no option is needed.
  touch(folder / "BraTS20_Training_355_seg.nii");
  const auto renamed = revox::data::discover_brats_cases(dir.path());
  CHECK(renamed[0].segmentation->filename() == "BraTS20_Training_355_seg.nii");
}

TEST_CASE("label conventions are detected from the labels present", "[data][brats]") {
  const Shape5 shape{1, 1, 2, 3, 4};
  CHECK(revox::data::detect_label_convention(label_volume({0, 1, 2, 4}, shape)) ==
        LabelConvention::brats2017);
  CHECK(revox::data::detect_label_convention(label_volume({0, 3, 1}, shape)) ==
        LabelConvention::brats2023);
  CHECK_FALSE(revox::data::detect_label_convention(label_volume({0, 1, 2}, shape)).has_value());
  CHECK_THROWS_WITH(revox::data::detect_label_convention(label_volume({0, 3, 4}, shape), "c1"),
                    Catch::Contains("BraTS case c1") && Catch::Contains("mix 3") &&
                        Catch::Contains("(x=2, y=0, z=0)"));
  auto bad = label_volume({0}, shape);
  bad[shape.offset(0, 0, 1, 2, 3)] = 5;
  CHECK_THROWS_WITH(revox::data::detect_label_convention(bad, "c2"),
                    Catch::Contains("c2") && Catch::Contains("label 5") &&
                        Catch::Contains("(x=3, y=2, z=1)"));
  CHECK_THROWS_WITH(revox::data::check_labels(label_volume({0, 3}, shape),
                                              LabelConvention::brats2017, "c3"),
                    Catch::Contains("c3") && Catch::Contains("label 3") &&
                        Catch::Contains("{0, 1, 2, 4}"));
  CHECK_THROWS_WITH(revox::data::check_labels(label_volume({4}, shape),
                                              LabelConvention::brats2023, "c4"),
                    Catch::Contains("label 4") && Catch::Contains("{0, 1, 2, 3}"));
}

TEST_CASE("labels_from_volume rejects non-integral and unknown labels, naming the case",
          "[data][brats]") {
  Tensor<float> seg = Tensor<float>::zeros(Shape5{1, 1, 2, 2, 3});
  seg[1] = 1.0f;
  seg[2] = 2.0f;
  seg[3] = 4.0f;
  const auto labels =
      revox::data::labels_from_volume(seg, LabelConvention::brats2017, "BraTS20_Training_001");
  CHECK(labels.shape() == seg.shape());
  CHECK(labels[3] == 4);
  CHECK(revox::data::labels_from_volume(seg, std::nullopt, "x")[2] == 2);

  Tensor<float> half = seg.clone();
  half[5] = 2.5f;
  CHECK_THROWS_WITH(
      revox::data::labels_from_volume(half, std::nullopt, "BraTS20_Training_001", "seg.nii"),
      Catch::Contains("BraTS20_Training_001") && Catch::Contains("seg.nii") &&
          Catch::Contains("non-integral label 2.5") && Catch::Contains("(x=2, y=1, z=0)"));
  Tensor<float> five = seg.clone();
  five[7] = 5.0f;
  CHECK_THROWS_WITH(revox::data::labels_from_volume(five, std::nullopt, "case9"),
                    Catch::Contains("case9") && Catch::Contains("label 5"));
  CHECK_THROWS_WITH(revox::data::labels_from_volume(seg, LabelConvention::brats2023, "case9"),
                    Catch::Contains("label 4") && Catch::Contains("{0, 1, 2, 3}"));
  Tensor<float> negative = seg.clone();
  negative[0] = -1.0f;
  CHECK_THROWS_WITH(revox::data::labels_from_volume(negative, std::nullopt, "case9"),
                    Catch::Contains("label -1"));
  Tensor<float> nan = seg.clone();
  nan[0] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_WITH(revox::data::labels_from_volume(nan, std::nullopt, "case9"),
                    Catch::Contains("non-integral"));
}

TEST_CASE("region_targets builds WT, TC, ET and labels_from_regions inverts it",
          "[data][brats]") {
  const Shape5 shape{2, 1, 1, 2, 3};
  for (LabelConvention convention : {LabelConvention::brats2017, LabelConvention::brats2023}) {
    const std::uint8_t et = revox::data::enhancing_label(convention);
    const auto labels = label_volume({0, 1, 2, et}, shape);
    const auto regions = revox::data::region_targets(labels, convention);
    REQUIRE(regions.shape() == Shape5{2, 3, 1, 2, 3});
    for (index_t n = 0; n < 2; ++n) {
      for (index_t i = 0; i < shape.spatial(); ++i) {
        const std::uint8_t v = labels[n * shape.spatial() + i];
        INFO("label " << static_cast<int>(v));
        CHECK(regions[(n * 3 + 0) * shape.spatial() + i] == (v != 0 ? 1.0f : 0.0f));
        CHECK(regions[(n * 3 + 1) * shape.spatial() + i] == (v == 1 || v == et ? 1.0f : 0.0f));
        CHECK(regions[(n * 3 + 2) * shape.spatial() + i] == (v == et ? 1.0f : 0.0f));
      }
    }
    const auto back = revox::data::labels_from_regions(regions, convention);
    REQUIRE(back.shape() == labels.shape());
    for (index_t i = 0; i < labels.numel(); ++i) CHECK(back[i] == labels[i]);
  }
  // Probabilities are thresholded, and the regions nest (ET wins over TC over WT).
  Tensor<float> probabilities = Tensor<float>::zeros(Shape5{1, 3, 1, 1, 4});
  const float values[3][4] = {{0.9f, 0.9f, 0.4f, 0.2f},   // WT
                              {0.1f, 0.8f, 0.6f, 0.3f},   // TC
                              {0.2f, 0.3f, 0.2f, 0.7f}};  // ET
  for (int c = 0; c < 3; ++c)
    for (int i = 0; i < 4; ++i) probabilities[c * 4 + i] = values[c][i];
  const auto labels = revox::data::labels_from_regions(probabilities, LabelConvention::brats2017);
  CHECK(labels[0] == 2);
  CHECK(labels[1] == 1);
  CHECK(labels[2] == 1);
  CHECK(labels[3] == 4);

  CHECK_THROWS_WITH(revox::data::region_targets(label_volume({0, 3}, shape),
                                                LabelConvention::brats2017, "c5"),
                    Catch::Contains("c5") && Catch::Contains("label 3"));
  CHECK_THROWS_WITH(revox::data::labels_from_regions(Tensor<float>::zeros(Shape5{1, 2, 1, 1, 1}),
                                                     LabelConvention::brats2017),
                    Catch::Contains("3 channels"));
}


namespace {

using revox::io::NiftiGeometry;

// A (1, 1, D, H, W) volume whose voxel i holds base + i, with a zero (background) border
// along W, so that every modality is distinct and not constant.
Tensor<float> modality_volume(Shape5 shape, float base) {
  Tensor<float> t(shape);
  for (index_t i = 0; i < t.numel(); ++i) {
    t[i] = (i % shape.w == 0) ? 0.0f : base + static_cast<float>(i);
  }
  return t;
}

Tensor<std::uint8_t> seg_volume(Shape5 shape, std::vector<std::uint8_t> values) {
  return label_volume(values, shape);
}

const Shape5 small{1, 1, 4, 5, 6};  // W x H x D = 6 x 5 x 4

// Writes a case with real NIfTI files of size `small`, and returns its folder.
fs::path write_case(const fs::path& parent, const std::string& id, BratsNaming naming,
                    const std::string& ext, const std::vector<std::uint8_t>& labels,
                    bool with_seg = true) {
  const fs::path folder = parent / id;
  fs::create_directories(folder);
  const std::string sep = naming == BratsNaming::brats2017 ? "_" : "-";
  const NiftiGeometry geometry = revox::io::default_geometry();
  const auto suffixes = revox::data::modality_suffixes(naming);
  for (std::size_t m = 0; m < suffixes.size(); ++m) {
    revox::io::write_nifti(folder / (id + sep + suffixes[m] + ext),
                           modality_volume(small, 1000.0f * static_cast<float>(m + 1)), geometry);
  }
  if (with_seg) {
    revox::io::write_nifti_labels(folder / (id + sep + "seg" + ext), seg_volume(small, labels),
                                  geometry);
  }
  return folder;
}

revox::data::LoadedCase load_only_case(const fs::path& root,
                                       const revox::data::LoadOptions& options = {},
                                       const DiscoverOptions& discover = {}) {
  const auto cases = revox::data::discover_brats_cases(root, discover);
  REQUIRE(cases.size() == 1);
  return revox::data::load_brats_case(cases[0], options);
}

}  // namespace

TEST_CASE("load_brats_case reads a 2020 case: modalities in order, labels, geometry",
          "[data][brats][nifti]") {
  TempDir dir;
  write_case(dir.path(), "BraTS20_Training_001", BratsNaming::brats2017, ".nii.gz",
             {0, 1, 2, 4, 0});
  const auto loaded = load_only_case(dir.path());
  CHECK(loaded.id == "BraTS20_Training_001");
  REQUIRE(loaded.image.shape() == Shape5{1, 4, 4, 5, 6});
  for (index_t m = 0; m < 4; ++m) {
    const auto expected = modality_volume(small, 1000.0f * static_cast<float>(m + 1));
    for (index_t i = 0; i < small.spatial(); ++i) {
      REQUIRE(loaded.image[m * small.spatial() + i] == expected[i]);
    }
  }
  REQUIRE(loaded.labels.has_value());
  const auto expected_labels = seg_volume(small, {0, 1, 2, 4, 0});
  REQUIRE(loaded.labels->shape() == small);
  for (index_t i = 0; i < small.numel(); ++i) REQUIRE((*loaded.labels)[i] == expected_labels[i]);
  CHECK(loaded.label_convention == LabelConvention::brats2017);
  CHECK(loaded.geometry.matches(revox::io::default_geometry()));

  revox::data::LoadOptions no_seg;
  no_seg.load_segmentation = false;
  CHECK_FALSE(load_only_case(dir.path(), no_seg).labels.has_value());
  revox::data::LoadOptions sized;
  sized.expected_size = std::array<index_t, 3>{155, 240, 240};
  CHECK_THROWS_WITH(load_only_case(dir.path(), sized),
                    Catch::Contains("BraTS20_Training_001") && Catch::Contains("modality t1") &&
                        Catch::Contains("6 x 5 x 4 (W x H x D)") &&
                        Catch::Contains("expected 240 x 240 x 155"));
}

TEST_CASE("load_brats_case reads 2023 cases (.nii) and detects or configures conventions",
          "[data][brats][nifti]") {
  TempDir dir;
  write_case(dir.path(), "BraTS-GLI-00000-000", BratsNaming::brats2023, ".nii", {0, 3, 2, 1});
  const auto loaded = load_only_case(dir.path());
  CHECK(loaded.label_convention == LabelConvention::brats2023);
  // t1n, t1c, t2w, t2f land in channels t1, t1ce, t2, flair.
  for (index_t m = 0; m < 4; ++m) {
    CHECK(loaded.image[m * small.spatial() + 1] == 1000.0f * static_cast<float>(m + 1) + 1.0f);
  }
  revox::data::LoadOptions old_labels;
  old_labels.label_convention = LabelConvention::brats2017;
  CHECK_THROWS_WITH(load_only_case(dir.path(), old_labels),
                    Catch::Contains("BraTS-GLI-00000-000") && Catch::Contains("label 3") &&
                        Catch::Contains("BraTS-GLI-00000-000-seg.nii"));

  SECTION("labels without an enhancing tumor follow the naming") {
    TempDir d2;
    write_case(d2.path(), "BraTS-GLI-00001-000", BratsNaming::brats2023, ".nii.gz", {0, 1, 2});
    CHECK(load_only_case(d2.path()).label_convention == LabelConvention::brats2023);
    TempDir d3;
    write_case(d3.path(), "BraTS2021_00001", BratsNaming::brats2017, ".nii.gz", {0, 2});
    CHECK(load_only_case(d3.path()).label_convention == LabelConvention::brats2017);
  }
  SECTION("a case without segmentation loads for prediction") {
    TempDir d4;
    write_case(d4.path(), "BraTS20_Validation_001", BratsNaming::brats2017, ".nii.gz", {},
               /*with_seg=*/false);
    const auto unlabeled = load_only_case(d4.path());
    CHECK_FALSE(unlabeled.labels.has_value());
    CHECK(unlabeled.label_convention == LabelConvention::brats2017);
    CHECK(unlabeled.image.shape() == Shape5{1, 4, 4, 5, 6});
  }
}

TEST_CASE("load_brats_case rejects bad labels naming the case and the file",
          "[data][brats][nifti]") {
  TempDir dir;
  const fs::path folder =
      write_case(dir.path(), "BraTS20_Training_002", BratsNaming::brats2017, ".nii.gz", {0, 1});
  const fs::path seg = folder / "BraTS20_Training_002_seg.nii.gz";
  Tensor<float> values = Tensor<float>::zeros(small);
  SECTION("label 5") {
    values[small.offset(0, 0, 2, 3, 4)] = 5.0f;
    revox::io::write_nifti(seg, values, revox::io::default_geometry());
    CHECK_THROWS_WITH(load_only_case(dir.path()),
                      Catch::Contains("BraTS20_Training_002") && Catch::Contains(seg.string()) &&
                          Catch::Contains("label 5") && Catch::Contains("(x=4, y=3, z=2)"));
  }
  SECTION("label 2.5") {
    values[7] = 2.5f;
    revox::io::write_nifti(seg, values, revox::io::default_geometry());
    CHECK_THROWS_WITH(load_only_case(dir.path()),
                      Catch::Contains("BraTS20_Training_002") &&
                          Catch::Contains("non-integral label 2.5"));
  }
  SECTION("labels 3 and 4 together") {
    values[1] = 3.0f;
    values[2] = 4.0f;
    revox::io::write_nifti(seg, values, revox::io::default_geometry());
    CHECK_THROWS_WITH(load_only_case(dir.path()),
                      Catch::Contains("BraTS20_Training_002") && Catch::Contains("mix 3"));
  }
}

TEST_CASE("load_brats_case rejects modalities that disagree in size or geometry",
          "[data][brats][nifti]") {
  TempDir dir;
  const fs::path folder =
      write_case(dir.path(), "BraTS20_Training_003", BratsNaming::brats2017, ".nii.gz", {0, 1});
  const fs::path t2 = folder / "BraTS20_Training_003_t2.nii.gz";
  SECTION("another size") {
    revox::io::write_nifti(t2, modality_volume(Shape5{1, 1, 3, 5, 6}, 5.0f),
                           revox::io::default_geometry());
    CHECK_THROWS_WITH(load_only_case(dir.path()),
                      Catch::Contains("BraTS20_Training_003") && Catch::Contains("modality t2") &&
                          Catch::Contains("6 x 5 x 3 (W x H x D)") &&
                          Catch::Contains("t1 '") && Catch::Contains("6 x 5 x 4"));
  }
  SECTION("another spacing") {
    revox::io::write_nifti(t2, modality_volume(small, 5.0f),
                           revox::io::default_geometry({1.0, 1.0, 1.5}));
    CHECK_THROWS_WITH(load_only_case(dir.path()),
                      Catch::Contains("modality t2") && Catch::Contains("another geometry") &&
                          Catch::Contains("1.5"));
  }
  SECTION("another origin") {
    NiftiGeometry shifted = revox::io::default_geometry();
    shifted.srow[0][3] = 0.5;
    revox::io::write_nifti(t2, modality_volume(small, 5.0f), shifted);
    CHECK_THROWS_WITH(load_only_case(dir.path()), Catch::Contains("another geometry"));
    revox::data::LoadOptions loose;
    loose.geometry_tolerance = 0.6;
    CHECK(load_only_case(dir.path(), loose).image.shape() == Shape5{1, 4, 4, 5, 6});
  }
  SECTION("a segmentation on another grid") {
    revox::io::write_nifti_labels(folder / "BraTS20_Training_003_seg.nii.gz",
                                  seg_volume(small, {0, 1}),
                                  revox::io::default_geometry({0.5, 1.0, 1.0}));
    CHECK_THROWS_WITH(load_only_case(dir.path()),
                      Catch::Contains("BraTS20_Training_003") &&
                          Catch::Contains("segmentation") && Catch::Contains("another geometry"));
  }
}

TEST_CASE("load_brats_case refuses a constant modality", "[data][brats][nifti]") {
  TempDir dir;
  const fs::path folder =
      write_case(dir.path(), "BraTS20_Training_004", BratsNaming::brats2017, ".nii.gz", {0, 1});
  revox::io::write_nifti(folder / "BraTS20_Training_004_flair.nii.gz",
                         Tensor<float>::zeros(small), revox::io::default_geometry());
  CHECK_THROWS_WITH(load_only_case(dir.path()),
                    Catch::Contains("BraTS20_Training_004") &&
                        Catch::Contains("modality flair") && Catch::Contains("constant"));
}

TEST_CASE("load_brats_case names the case when a file cannot be read", "[data][brats][nifti]") {
  TempDir dir;
  const fs::path folder =
      write_case(dir.path(), "BraTS20_Training_006", BratsNaming::brats2017, ".nii.gz", {0, 1});
  const fs::path t1ce = folder / "BraTS20_Training_006_t1ce.nii.gz";
  std::ofstream(t1ce, std::ios::binary | std::ios::trunc) << "not a nifti file";
  CHECK_THROWS_WITH(load_only_case(dir.path()),
                    Catch::Contains("BraTS case BraTS20_Training_006, modality t1ce") &&
                        Catch::Contains(t1ce.string()));
}

TEST_CASE("BraTS20_Training_355's aliased segmentation loads when accepted",
          "[data][brats][nifti]") {
  TempDir dir;
  const fs::path folder = write_case(dir.path(), "BraTS20_Training_355", BratsNaming::brats2017,
                                     ".nii", {}, /*with_seg=*/false);
  revox::io::write_nifti_labels(folder / "W39_1998.09.19_Segm.nii", seg_volume(small, {0, 4}),
                                revox::io::default_geometry());
  DiscoverOptions accept;
  accept.accept_known_segmentation_aliases = true;
  const auto loaded = load_only_case(dir.path(), {}, accept);
  REQUIRE(loaded.labels.has_value());
  CHECK((*loaded.labels)[1] == 4);
}

TEST_CASE("a loaded case goes through z-score, padding and region targets and back",
          "[data][brats][nifti]") {
  TempDir dir;
  write_case(dir.path(), "BraTS2021_00005", BratsNaming::brats2017, ".nii.gz", {0, 1, 2, 4});
  auto loaded = load_only_case(dir.path());
  revox::data::zscore_nonzero(loaded.image, loaded.id);
  revox::data::CropPad plan;
  const auto image = revox::data::crop_or_pad(loaded.image, {8, 8, 8}, plan);
  const auto labels = revox::data::crop_or_pad(*loaded.labels, plan);
  const auto regions = revox::data::region_targets(labels, loaded.label_convention, loaded.id);
  CHECK(image.shape() == Shape5{1, 4, 8, 8, 8});
  CHECK(regions.shape() == Shape5{1, 3, 8, 8, 8});
  const auto predicted = revox::data::labels_from_regions(regions, loaded.label_convention);
  const auto restored = revox::data::undo_crop_or_pad(predicted, plan);
  REQUIRE(restored.shape() == loaded.labels->shape());
  for (index_t i = 0; i < restored.numel(); ++i) REQUIRE(restored[i] == (*loaded.labels)[i]);
}


namespace {

// Overwrites float32 voxels of an uncompressed NIfTI-1 file that revox wrote (data at 352).
void poke_float_voxels(const fs::path& path, const std::vector<index_t>& voxels, float value) {
  std::fstream file(path, std::ios::binary | std::ios::in | std::ios::out);
  REQUIRE(file.good());
  for (index_t i : voxels) {
    file.seekp(352 + 4 * i);
    file.write(reinterpret_cast<const char*>(&value), sizeof value);
  }
  REQUIRE(file.good());
}

}  // namespace

TEST_CASE("load_brats_case: NaN in a modality is an error naming --nan-policy, or zeroed and "
          "reported with nan_policy zero, NaN in a segmentation is always an error",
          "[data][brats][nifti]") {
  TempDir dir;
  const fs::path folder = write_case(dir.path(), "BraTS20_Training_007", BratsNaming::brats2017,
                                     ".nii", {0, 1, 2, 4, 0});
  const fs::path flair = folder / "BraTS20_Training_007_flair.nii";
  poke_float_voxels(flair, {7, 8}, std::numeric_limits<float>::quiet_NaN());  // (1, 1, 0) first
  CHECK_THROWS_WITH(load_only_case(dir.path()),
                    "BraTS case BraTS20_Training_007, modality flair: NIfTI file '" +
                        flair.string() + "': 2 NaN or Inf voxels; the first at (x, y, z) = (1, "
                        "1, 0); to read such voxels as 0, choose the NaN policy \"zero\" "
                        "(revox-brats --nan-policy zero, or NiftiReadOptions::nan_policy = "
                        "NanPolicy::zero)");

  revox::data::LoadOptions zero;
  zero.nan_policy = revox::io::NanPolicy::zero;
  const auto loaded = load_only_case(dir.path(), zero);
  REQUIRE(loaded.zeroed.size() == 1);
  CHECK(loaded.zeroed[0].role == "modality flair");
  CHECK(loaded.zeroed[0].file == flair);
  CHECK(loaded.zeroed[0].count == 2);
  CHECK(revox::data::describe_zeroed(loaded.id, loaded.zeroed[0]) ==
        "BraTS case BraTS20_Training_007, modality flair '" + flair.string() +
            "': 2 NaN/Inf voxels set to 0 (NaN policy zero)");
  const auto expected = modality_volume(small, 4000.0f);
  for (index_t i = 0; i < small.spatial(); ++i) {
    INFO("voxel " << i);
    REQUIRE(loaded.image[3 * small.spatial() + i] == (i == 7 || i == 8 ? 0.0f : expected[i]));
  }
  REQUIRE(loaded.labels.has_value());

  // A segmentation stored as float32 with a NaN: an error under either policy, without the
  // hint to choose a policy.
  const fs::path seg = folder / "BraTS20_Training_007_seg.nii";
  Tensor<float> labels(small);
  const auto raw_labels = seg_volume(small, {0, 1, 2, 4, 0});
  for (index_t i = 0; i < small.numel(); ++i) labels[i] = raw_labels[i];
  revox::io::write_nifti(seg, labels, revox::io::default_geometry());
  CHECK(load_only_case(dir.path(), zero).labels.has_value());
  poke_float_voxels(seg, {3}, std::numeric_limits<float>::infinity());
  for (const auto policy : {revox::io::NanPolicy::error, revox::io::NanPolicy::zero}) {
    revox::data::LoadOptions options;
    options.nan_policy = policy;
    poke_float_voxels(flair, {7, 8}, 1.0f);
    CHECK_THROWS_WITH(load_only_case(dir.path(), options),
                      "BraTS case BraTS20_Training_007, segmentation: NIfTI file '" +
                          seg.string() + "': 1 NaN or Inf voxel; the first at (x, y, z) = (3, "
                          "0, 0) (a segmentation must hold finite labels; the NaN policy "
                          "applies to images only)");
  }
}
