// Phantom generator: BraTS label set, nested tumor sub-regions (geometrically enclosed, not
// just by label definition), tissue contrasts per modality, skull stripping, seeds, cases
// without enhancing tumor, and the written dataset in the 2020 and 2023 layouts.
#include <catch2/catch.hpp>

#include <omp.h>
#include <stdlib.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "revox/data/phantom.hpp"
#include "support/phantom.hpp"
#include "support/temp_dir.hpp"
#include "support/tensors.hpp"

using revox::Shape5;
using revox::Tensor;
using revox::index_t;
using revox::data::PhantomCase;
using revox::data::PhantomOptions;
using revox::data::Tissue;
using namespace revox::test;  // NOLINT(google-build-using-namespace)
using revox_test::TempDir;

namespace {

std::set<int> values_of(const Tensor<std::uint8_t>& t) {
  std::set<int> values;
  for (index_t i = 0; i < t.numel(); ++i) values.insert(t[i]);
  return values;
}

bool in_tc(std::uint8_t label) { return label == 1 || label == 4; }
bool in_wt(std::uint8_t label) { return label != 0; }

// Counts voxels where `inner` holds and a 6-neighbour (inside the volume) fails `outer`.
template <class Inner, class Outer>
index_t leaks(const Tensor<std::uint8_t>& labels, Inner inner, Outer outer) {
  const Shape5 s = labels.shape();
  const auto v = labels.cview();
  index_t count = 0;
  const index_t step[6][3] = {{1, 0, 0}, {-1, 0, 0}, {0, 1, 0}, {0, -1, 0}, {0, 0, 1}, {0, 0, -1}};
  for (index_t d = 0; d < s.d; ++d)
    for (index_t h = 0; h < s.h; ++h)
      for (index_t w = 0; w < s.w; ++w) {
        if (!inner(v.at(0, 0, d, h, w))) continue;
        for (const auto& e : step) {
          const index_t nd = d + e[0], nh = h + e[1], nw = w + e[2];
          if (nd < 0 || nh < 0 || nw < 0 || nd >= s.d || nh >= s.h || nw >= s.w) {
            ++count;  // the tumor must not touch the volume's faces either
            continue;
          }
          if (!outer(v.at(0, 0, nd, nh, nw))) ++count;
        }
      }
  return count;
}

enum Modality { t1 = 0, t1ce = 1, t2 = 2, flair = 3 };

}  // namespace

TEST_CASE("phantom: BraTS 2020 labels with nested, enclosed tumor sub-regions",
          "[data][phantom]") {
  for (std::uint64_t seed = 1; seed <= 2; ++seed) {
    INFO("seed " << seed);
    const PhantomCase phantom = revox::data::make_phantom(small_options(seed, 96, 96, 72));
    REQUIRE(phantom.image.shape() == (Shape5{1, 4, 72, 96, 96}));
    REQUIRE(phantom.labels.shape() == (Shape5{1, 1, 72, 96, 96}));
    CHECK(values_of(phantom.labels) == std::set<int>{0, 1, 2, 4});
    // Edema encloses the core, and the enhancing rim encloses the necrosis.
    CHECK(leaks(phantom.labels, in_tc, in_wt) == 0);
    CHECK(leaks(phantom.labels, [](std::uint8_t l) { return l == 1; }, in_tc) == 0);
    // Every tumor voxel is a tumor tissue inside the (skull-stripped) brain.
    const index_t spatial = phantom.labels.numel();
    index_t mismatched = 0;
    for (index_t i = 0; i < spatial; ++i) {
      const std::uint8_t label = phantom.labels[i];
      const auto tissue = static_cast<Tissue>(phantom.tissue[i]);
      const bool expected_tissue = label == 0   ? (tissue != Tissue::edema && tissue != Tissue::necrosis &&
                                                   tissue != Tissue::enhancing)
                                   : label == 1 ? tissue == Tissue::necrosis
                                   : label == 2 ? tissue == Tissue::edema
                                                : tissue == Tissue::enhancing;
      mismatched += expected_tissue ? 0 : 1;
      if (label != 0) {
        for (int c = 0; c < 4; ++c) mismatched += phantom.image[c * spatial + i] > 0.0f ? 0 : 1;
      }
    }
    CHECK(mismatched == 0);
  }
}

TEST_CASE("phantom: modalities have plausible relative contrasts", "[data][phantom]") {
  for (std::uint64_t seed : {3u, 8u}) {
    INFO("seed " << seed);
    const PhantomCase p = revox::data::make_phantom(small_options(seed));
    auto mean = [&](int c, Tissue t) { return tissue_mean(p, c, t); };
    const Tissue wm = Tissue::white_matter, gm = Tissue::grey_matter, csf = Tissue::csf,
                 edema = Tissue::edema, ncr = Tissue::necrosis, et = Tissue::enhancing;
    // T1: white matter brighter than grey; tumor and CSF dark.
    CHECK(mean(t1, wm) > 1.15 * mean(t1, gm));
    for (Tissue t : {edema, ncr, et, csf}) CHECK(mean(t1, t) < mean(t1, gm));
    // T1ce: the enhancing rim is the brightest tissue.
    for (Tissue t : {wm, gm, csf, edema, ncr}) CHECK(mean(t1ce, et) > 1.3 * mean(t1ce, t));
    // T2: CSF and edema bright.
    CHECK(mean(t2, csf) > 1.3 * mean(t2, gm));
    CHECK(mean(t2, gm) > mean(t2, wm));
    CHECK(mean(t2, edema) > 1.3 * mean(t2, wm));
    // FLAIR: edema bright, CSF dark.
    CHECK(mean(flair, edema) > 1.3 * mean(flair, gm));
    CHECK(mean(flair, edema) > 1.3 * mean(flair, wm));
    CHECK(mean(flair, csf) < 0.5 * mean(flair, wm));
    // Grey matter, white matter and CSF all make up a real part of the brain.
    index_t counts[revox::data::kTissueCount] = {};
    for (index_t i = 0; i < p.tissue.numel(); ++i) ++counts[p.tissue[i]];
    for (Tissue t : {wm, gm, csf}) CHECK(counts[static_cast<int>(t)] > p.tissue.numel() / 50);
  }
}

TEST_CASE("phantom: skull-stripped by default, the head appears on request", "[data][phantom]") {
  PhantomOptions options = small_options(5, 40, 44, 32);
  const PhantomCase stripped = revox::data::make_phantom(options);
  options.skull_stripped = false;
  const PhantomCase head = revox::data::make_phantom(options);
  CHECK(identical(stripped.labels, head.labels));
  CHECK(identical(stripped.tissue, head.tissue));
  const index_t spatial = stripped.tissue.numel();
  index_t wrong = 0, head_voxels = 0;
  for (index_t i = 0; i < spatial; ++i) {
    const auto tissue = static_cast<Tissue>(stripped.tissue[i]);
    const bool brain = tissue != Tissue::background && tissue != Tissue::skull &&
                       tissue != Tissue::scalp;
    const bool outside_brain_but_head = tissue == Tissue::skull || tissue == Tissue::scalp;
    head_voxels += outside_brain_but_head ? 1 : 0;
    for (int c = 0; c < 4; ++c) {
      const float s = stripped.image[c * spatial + i];
      const float h = head.image[c * spatial + i];
      wrong += brain ? (s > 0.0f && s == h ? 0 : 1) : (s == 0.0f ? 0 : 1);
      wrong += outside_brain_but_head ? (h > 0.0f ? 0 : 1) : 0;
      wrong += tissue == Tissue::background ? (h == 0.0f ? 0 : 1) : 0;
    }
  }
  CHECK(wrong == 0);
  CHECK(head_voxels > spatial / 20);
}

TEST_CASE("phantom: seeds reproduce, and the result does not depend on threads",
          "[data][phantom]") {
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const PhantomCase a = revox::data::make_phantom(small_options(7, 33, 30, 21));
  omp_set_num_threads(3);
  const PhantomCase b = revox::data::make_phantom(small_options(7, 33, 30, 21));
  omp_set_num_threads(threads);
  const PhantomCase c = revox::data::make_phantom(small_options(8, 33, 30, 21));
  CHECK(identical(a.image, b.image));
  CHECK(identical(a.labels, b.labels));
  CHECK_FALSE(identical(a.image, c.image));
  CHECK_FALSE(identical(a.labels, c.labels));
}

TEST_CASE("phantom: cases without enhancing tumor have an empty ET", "[data][phantom]") {
  PhantomOptions options = small_options(9);
  options.enhancing = false;
  const PhantomCase no_et = revox::data::make_phantom(options);
  CHECK(values_of(no_et.labels) == std::set<int>{0, 1, 2});
  CHECK(values_of(no_et.tissue).count(static_cast<int>(Tissue::enhancing)) == 0);
  // The same seed with enhancing tumor differs only in the rim.
  options.enhancing = true;
  const PhantomCase with_et = revox::data::make_phantom(options);
  index_t differing = 0, rim = 0;
  for (index_t i = 0; i < no_et.labels.numel(); ++i) {
    rim += with_et.labels[i] == 4 ? 1 : 0;
    if (with_et.labels[i] != no_et.labels[i]) {
      ++differing;
      CHECK(with_et.labels[i] == 4);
      CHECK(no_et.labels[i] == 1);
    }
  }
  CHECK(rim > 0);
  CHECK(differing == rim);
  // Dataset cases 4, 8, ... are the ones without enhancing tumor.
  CHECK(revox::data::phantom_case_enhancing(1));
  CHECK_FALSE(revox::data::phantom_case_enhancing(4));
  CHECK_FALSE(revox::data::phantom_case_enhancing(8));
}

TEST_CASE("phantom: misuse throws a readable error", "[data][phantom]") {
  PhantomOptions options = small_options(1);
  options.depth = 4;
  CHECK_THROWS_WITH(revox::data::make_phantom(options), Catch::Contains("at least 8"));
  options = small_options(1);
  options.noise = -1.0;
  CHECK_THROWS_WITH(revox::data::make_phantom(options), Catch::Contains("noise"));
  CHECK_THROWS_WITH(revox::data::phantom_case_id(revox::data::BratsNaming::brats2017, 1000),
                    Catch::Contains("[1, 999]"));
  CHECK(revox::data::phantom_case_id(revox::data::BratsNaming::brats2017, 7) ==
        "BraTS20_Training_007");
  CHECK(revox::data::phantom_case_id(revox::data::BratsNaming::brats2023, 12) ==
        "BraTS-GLI-00012-000");
}


namespace {

void check_written_case(const std::filesystem::path& folder, const std::string& id,
                        const std::array<const char*, 5>& suffixes, const char* separator,
                        const PhantomCase& expected, std::uint8_t enhancing_value) {
  const Shape5 volume = expected.labels.shape();
  for (int c = 0; c < 4; ++c) {
    const auto path = folder / (id + separator + suffixes[static_cast<std::size_t>(c)] + ".nii.gz");
    INFO(path.string());
    const revox::io::NiftiVolume v = revox::io::read_nifti(path);
    CHECK(v.datatype == NIFTI_TYPE_FLOAT32);
    REQUIRE(v.data.shape() == volume);
    CHECK(std::memcmp(v.data.data(), expected.image.data() + c * volume.spatial(),
                      v.data.bytes()) == 0);
    CHECK(v.geometry.matches(revox::io::default_geometry()));
  }
  const auto seg = folder / (id + separator + "seg.nii.gz");
  INFO(seg.string());
  const revox::io::NiftiVolume v = revox::io::read_nifti(seg);
  CHECK(v.datatype == NIFTI_TYPE_UINT8);
  REQUIRE(v.data.shape() == volume);
  index_t wrong = 0;
  for (index_t i = 0; i < v.data.numel(); ++i) {
    const std::uint8_t label = expected.labels[i] == 4 ? enhancing_value : expected.labels[i];
    wrong += v.data[i] == static_cast<float>(label) ? 0 : 1;
  }
  CHECK(wrong == 0);
}

}  // namespace

TEST_CASE("phantom: writes the BraTS 2020 layout", "[data][phantom][nifti]") {
  const TempDir root("revox_phantom");
  const revox::data::PhantomSize size{28, 30, 22};
  std::vector<int> reported;
  const auto folders = revox::data::write_phantom_dataset(
      root.path(), 4, size, revox::data::BratsNaming::brats2017, 42,
      [&](int done, int total, const std::filesystem::path& folder) {
        CHECK(total == 4);
        CHECK(std::filesystem::is_directory(folder));
        reported.push_back(done);
      });
  CHECK(reported == std::vector<int>{1, 2, 3, 4});
  REQUIRE(folders.size() == 4);
  for (int index = 1; index <= 4; ++index) {
    const std::string id = revox::data::phantom_case_id(revox::data::BratsNaming::brats2017, index);
    CHECK(folders[static_cast<std::size_t>(index - 1)] == root.path() / id);
    PhantomOptions options;
    options.width = size.width;
    options.height = size.height;
    options.depth = size.depth;
    options.seed = revox::data::phantom_case_seed(42, index);
    options.enhancing = revox::data::phantom_case_enhancing(index);
    const PhantomCase expected = revox::data::make_phantom(options);
    check_written_case(root.path() / id, id, {"t1", "t1ce", "t2", "flair", "seg"}, "_", expected, 4);
    const auto labels = revox::io::read_nifti(root.path() / id / (id + "_seg.nii.gz"));
    std::set<int> values;
    for (index_t i = 0; i < labels.data.numel(); ++i) values.insert(static_cast<int>(labels.data[i]));
    // Tiny volumes may miss a sub-region; the enhancing tumor is absent exactly in case 4.
    CHECK(values.count(0) == 1);
    CHECK(values.count(2) == 1);
    CHECK(values.count(3) == 0);
    CHECK(values.count(4) == (index == 4 ? 0u : 1u));
    CHECK(*values.rbegin() <= 4);
  }
  CHECK(std::filesystem::exists(root.path() / "BraTS20_Training_001" / "BraTS20_Training_001_flair.nii.gz"));
  // The discovery code finds exactly these cases.
  const auto discovered = revox::data::discover_brats_cases(root.path());
  REQUIRE(discovered.size() == 4);
  CHECK(discovered[0].id == "BraTS20_Training_001");
  CHECK(discovered[0].segmentation.has_value());

  // A second run over the same root refuses before writing anything.
  const auto before = std::filesystem::last_write_time(folders[0] / "BraTS20_Training_001_t1.nii.gz");
  CHECK_THROWS_WITH(revox::data::write_phantom_dataset(root.path(), 5, size,
                                                       revox::data::BratsNaming::brats2017, 43),
                    Catch::Contains("refusing to overwrite"));
  CHECK_FALSE(std::filesystem::exists(root.path() / "BraTS20_Training_005"));
  CHECK(std::filesystem::last_write_time(folders[0] / "BraTS20_Training_001_t1.nii.gz") == before);
}

TEST_CASE("phantom: writes the BraTS 2023 layout with labels {0, 1, 2, 3}", "[data][phantom][nifti]") {
  const TempDir root("revox_phantom");
  // An existing empty case folder is fine.
  std::filesystem::create_directories(root.path() / "BraTS-GLI-00001-000");
  const revox::data::PhantomSize size{18, 16, 12};
  revox::data::write_phantom_dataset(root.path(), 2, size, revox::data::BratsNaming::brats2023, 3);
  for (int index = 1; index <= 2; ++index) {
    const std::string id = revox::data::phantom_case_id(revox::data::BratsNaming::brats2023, index);
    PhantomOptions options;
    options.width = size.width;
    options.height = size.height;
    options.depth = size.depth;
    options.seed = revox::data::phantom_case_seed(3, index);
    const PhantomCase expected = revox::data::make_phantom(options);
    check_written_case(root.path() / id, id, {"t1n", "t1c", "t2w", "t2f", "seg"}, "-", expected, 3);
  }
  CHECK(std::filesystem::exists(root.path() / "BraTS-GLI-00002-000" / "BraTS-GLI-00002-000-t2f.nii.gz"));
  const auto discovered = revox::data::discover_brats_cases(root.path());
  REQUIRE(discovered.size() == 2);
  CHECK(discovered[1].naming == revox::data::BratsNaming::brats2023);
}

