// revox/data/brats.hpp — BraTS cases: finding them on disk, their label conventions, and
// the region targets (WT, TC, ET) the network is trained on.
//
// Layouts found by discover_brats_cases (each case is a folder named after its id; files are
// .nii or .nii.gz):
//   2018/2019  <root>/{HGG,LGG}/BraTS19_CBICA_AAB_1/BraTS19_CBICA_AAB_1_{t1,t1ce,t2,flair,seg}
//   2020       <root>/BraTS20_Training_001/BraTS20_Training_001_{t1,t1ce,t2,flair,seg}
//   2021       <root>/BraTS2021_00000/BraTS2021_00000_{t1,t1ce,t2,flair,seg}
//   2023+      <root>/BraTS-GLI-00000-000/BraTS-GLI-00000-000-{t1n,t1c,t2w,t2f,seg}
// Files beside the case folders (name_mapping.csv, survival_info.csv) are skipped; folders
// without NIfTI files (HGG, LGG, a release folder) are searched, up to three levels down.
// A root that is itself a case folder gives that one case. Discovery only looks at names;
// it never reads a volume.
//
// Modalities always come in the order t1, t1ce, t2, flair (2023's t1n, t1c, t2w, t2f map to
// them in that order). A case without a segmentation is valid (validation and test sets);
// DiscoverOptions::require_segmentation makes it an error for training.
//
// Labels are the raw BraTS values in a Tensor<std::uint8_t> (N, 1, D, H, W):
//   brats2017 (2017-2021): 0 background, 1 NCR/NET, 2 edema, 4 enhancing tumor
//   brats2023 (2023+):     0 background, 1 NCR,     2 edema, 3 enhancing tumor
// Regions (Tensor<float> (N, 3, D, H, W), channels WT, TC, ET, values 0 or 1):
//   WT = {1, 2, ET}, TC = {1, ET}, ET = {ET}.
//
// Volumes are NCDHW with NIfTI x = W, y = H, z = D; voxel positions in messages are given
// as NIfTI (x, y, z), the way a viewer shows them, and sizes as W x H x D (NIfTI order).
//
// This header needs nifti_clib: link the revox::nifti CMake target.
// load_brats_case reads a case. It returns the image (1, 4, D, H, W) in the order t1, t1ce,
// t2, flair, the labels (1, 1, D, H, W) if the case has a segmentation, their convention and
// the geometry to write predictions with. It checks that the modalities and the
// segmentation agree in size and geometry (within a tolerance in mm), that no modality is
// constant, and that labels are integral and in the convention's set; every error names
// the case, the modality and the file. Modalities with NaN/Inf voxels are an error unless
// LoadOptions::nan_policy is io::NanPolicy::zero (then those voxels become 0 and
// LoadedCase::zeroed lists the files and counts); a segmentation with NaN/Inf always is.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <sstream>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "revox/core/error.hpp"
#include "revox/core/tensor.hpp"

#include "revox/io/nifti.hpp"

namespace revox::data {

enum class LabelConvention {
  brats2017,  // {0, 1, 2, 4}: BraTS 2017-2021
  brats2023,  // {0, 1, 2, 3}: BraTS 2023 and later
};

// File naming of a case: <id>_{t1,t1ce,t2,flair,seg} (2017-2021) or
// <id>-{t1n,t1c,t2w,t2f,seg} (2023+).
enum class BratsNaming { brats2017, brats2023 };

inline const char* to_string(LabelConvention convention) {
  return convention == LabelConvention::brats2017 ? "BraTS 2017-2021 labels {0, 1, 2, 4}"
                                                  : "BraTS 2023 labels {0, 1, 2, 3}";
}

inline std::uint8_t enhancing_label(LabelConvention convention) {
  return convention == LabelConvention::brats2017 ? std::uint8_t{4} : std::uint8_t{3};
}

// The label convention that goes with a naming when the labels do not decide it.
inline LabelConvention default_label_convention(BratsNaming naming) {
  return naming == BratsNaming::brats2017 ? LabelConvention::brats2017
                                          : LabelConvention::brats2023;
}

// The modality names of a naming, in revox's order t1, t1ce, t2, flair.
inline std::array<const char*, 4> modality_suffixes(BratsNaming naming) {
  if (naming == BratsNaming::brats2017) return {"t1", "t1ce", "t2", "flair"};
  return {"t1n", "t1c", "t2w", "t2f"};
}

struct BratsCase {
  std::string id;                                     // the case folder's name
  std::filesystem::path folder;
  std::array<std::filesystem::path, 4> modalities;    // t1, t1ce, t2, flair
  std::optional<std::filesystem::path> segmentation;  // absent for validation/test cases
  BratsNaming naming = BratsNaming::brats2017;
};

struct DiscoverOptions {
  // Every case must have a segmentation (training); otherwise its absence is fine.
  bool require_segmentation = false;
  // Use a known misnamed segmentation as is (BraTS20_Training_355's W39_1998.09.19_Segm.nii)
  // instead of stopping with a message that says how to fix it.
  bool accept_known_segmentation_aliases = false;
};

namespace detail {

namespace fs = std::filesystem;

// Segmentations shipped under another name in an official release.
struct KnownSegmentationAlias {
  const char* case_id;
  const char* file_name;
  const char* release;
};
inline constexpr KnownSegmentationAlias known_segmentation_aliases[] = {
    {"BraTS20_Training_355", "W39_1998.09.19_Segm.nii", "BraTS 2020 training data"},
};

inline bool is_nifti_name(const std::string& name) {
  auto ends_with = [&](const std::string& suffix) {
    return name.size() > suffix.size() &&
           name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  return ends_with(".nii") || ends_with(".nii.gz");
}

inline bool is_file(const fs::path& path) {
  std::error_code error;
  return fs::is_regular_file(path, error);
}

inline std::vector<fs::path> sorted_entries(const fs::path& folder) {
  std::vector<fs::path> entries;
  std::error_code error;
  for (fs::directory_iterator it(folder, error), end; !error && it != end; it.increment(error)) {
    entries.push_back(it->path());
  }
  REVOX_CHECK(!error, "discover_brats_cases: cannot list folder '", folder.string(),
              "': ", error.message());
  std::sort(entries.begin(), entries.end());
  return entries;
}

inline std::vector<std::string> nifti_files_in(const fs::path& folder) {
  std::vector<std::string> names;
  for (const fs::path& entry : sorted_entries(folder)) {
    const std::string name = entry.filename().string();
    if (is_nifti_name(name) && is_file(entry)) names.push_back(name);
  }
  return names;
}

// The file <stem>.nii.gz or <stem>.nii in `folder`, if exactly one of them exists.
inline std::optional<fs::path> find_volume(const fs::path& folder, const std::string& stem,
                                           const std::string& case_id) {
  const fs::path gz = folder / (stem + ".nii.gz");
  const fs::path plain = folder / (stem + ".nii");
  const bool has_gz = is_file(gz);
  const bool has_plain = is_file(plain);
  REVOX_CHECK(!(has_gz && has_plain), "BraTS case ", case_id, ": both ", plain.string(),
              " and ", gz.string(), " exist; keep one of them");
  if (has_gz) return gz;
  if (has_plain) return plain;
  return std::nullopt;
}

inline std::string join_names(const std::vector<std::string>& names, std::size_t limit = 8) {
  std::string joined;
  for (std::size_t i = 0; i < names.size() && i < limit; ++i) {
    joined += (i == 0 ? "" : ", ") + names[i];
  }
  if (names.size() > limit) joined += revox::detail::concat(", ... (", names.size(), " files)");
  return joined;
}

inline BratsCase parse_case_folder(const fs::path& folder, const DiscoverOptions& options) {
  BratsCase result;
  result.folder = folder;
  result.id = folder.filename().string();
  const std::string& id = result.id;

  // The naming whose modality files are present; a partial case keeps the naming it
  // matches best so that the message names the files that are really missing.
  int best_matches = 0;
  for (BratsNaming naming : {BratsNaming::brats2017, BratsNaming::brats2023}) {
    const char separator = naming == BratsNaming::brats2017 ? '_' : '-';
    int matches = 0;
    for (const char* suffix : modality_suffixes(naming)) {
      const std::string stem = id + separator + suffix;
      if (is_file(folder / (stem + ".nii.gz")) || is_file(folder / (stem + ".nii"))) ++matches;
    }
    if (matches > best_matches) {
      best_matches = matches;
      result.naming = naming;
    }
  }
  REVOX_CHECK(best_matches > 0, "BraTS case folder '", folder.string(),
              "' has no modality file named after the folder: expected ", id,
              "_t1.nii.gz (BraTS 2017-2021 naming) or ", id,
              "-t1n.nii.gz (BraTS 2023 naming), or .nii; NIfTI files present: ",
              join_names(nifti_files_in(folder)));

  const char separator = result.naming == BratsNaming::brats2017 ? '_' : '-';
  const auto suffixes = modality_suffixes(result.naming);
  for (std::size_t m = 0; m < suffixes.size(); ++m) {
    const std::string stem = id + separator + suffixes[m];
    const auto path = find_volume(folder, stem, id);
    REVOX_CHECK(path.has_value(), "BraTS case folder '", folder.string(), "' is missing modality ",
                suffixes[m], ": expected file ", stem, ".nii.gz or ", stem, ".nii");
    result.modalities[m] = *path;
  }

  const std::string seg_stem = id + separator + "seg";
  result.segmentation = find_volume(folder, seg_stem, id);
  if (!result.segmentation) {
    for (const KnownSegmentationAlias& alias : known_segmentation_aliases) {
      const fs::path aliased = folder / alias.file_name;
      if (!is_file(aliased)) continue;
      REVOX_CHECK(options.accept_known_segmentation_aliases, "BraTS case ", id,
                  ": the segmentation is named ", alias.file_name, " (a known quirk of case ",
                  alias.case_id, " in the ", alias.release, "); rename ", aliased.string(),
                  " to ", seg_stem, ".nii, or set "
                  "DiscoverOptions::accept_known_segmentation_aliases to use it as it is");
      result.segmentation = aliased;
    }
  }
  REVOX_CHECK(result.segmentation || !options.require_segmentation, "BraTS case ", id,
              ": no segmentation in '", folder.string(), "': expected ", seg_stem,
              ".nii.gz or ", seg_stem, ".nii (segmentations are required here)");
  return result;
}

inline void collect_cases(const fs::path& folder, int depth, const DiscoverOptions& options,
                          std::vector<BratsCase>& cases) {
  for (const fs::path& entry : sorted_entries(folder)) {
    std::error_code error;
    if (!fs::is_directory(entry, error)) continue;  // name_mapping.csv, survival_info.csv, ...
    if (entry.filename().string().rfind('.', 0) == 0) continue;  // hidden folders
    if (!nifti_files_in(entry).empty()) {
      cases.push_back(parse_case_folder(entry, options));
    } else if (depth > 1) {
      collect_cases(entry, depth - 1, options, cases);  // HGG/, LGG/, a release folder
    }
  }
}

}  // namespace detail

// All cases under `root`, sorted by id. Throws revox::Error naming the folder and the file
// when the root does not exist or holds no case, when a case folder lacks a modality, has
// both x.nii and x.nii.gz, or two folders share an id.
inline std::vector<BratsCase> discover_brats_cases(const std::filesystem::path& root,
                                                   const DiscoverOptions& options = {}) {
  std::error_code error;
  REVOX_CHECK(std::filesystem::exists(root, error), "discover_brats_cases: folder '",
              root.string(), "' does not exist");
  REVOX_CHECK(std::filesystem::is_directory(root, error), "discover_brats_cases: '",
              root.string(), "' is not a folder");
  std::vector<BratsCase> cases;
  if (!detail::nifti_files_in(root).empty()) {
    cases.push_back(detail::parse_case_folder(root, options));
    return cases;
  }
  detail::collect_cases(root, 3, options, cases);
  REVOX_CHECK(!cases.empty(), "discover_brats_cases: no BraTS case folder under '",
              root.string(), "' (expected folders like BraTS20_Training_001/"
              "BraTS20_Training_001_t1.nii.gz or BraTS-GLI-00000-000/"
              "BraTS-GLI-00000-000-t1n.nii.gz)");
  std::sort(cases.begin(), cases.end(),
            [](const BratsCase& a, const BratsCase& b) { return a.id < b.id; });
  for (std::size_t i = 1; i < cases.size(); ++i) {
    REVOX_CHECK(cases[i - 1].id != cases[i].id, "discover_brats_cases: case id ", cases[i].id,
                " appears twice: '", cases[i - 1].folder.string(), "' and '",
                cases[i].folder.string(), "'");
  }
  return cases;
}

namespace detail {

// "(x=.., y=.., z=..)" of flat voxel index `index` in a (N, C, D, H, W) shape.
inline std::string voxel_position(const Shape5& shape, index_t index) {
  const index_t w = index % shape.w;
  const index_t h = (index / shape.w) % shape.h;
  const index_t d = (index / (shape.w * shape.h)) % shape.d;
  return revox::detail::concat("(x=", w, ", y=", h, ", z=", d, ")");
}

inline std::string case_prefix(const std::string& case_id) {
  return case_id.empty() ? std::string() : "BraTS case " + case_id + ": ";
}

inline bool is_label_of(LabelConvention convention, index_t value) {
  return value == 0 || value == 1 || value == 2 || value == enhancing_label(convention);
}

}  // namespace detail

// Decides the convention from the labels present: a 4 (and no 3) means brats2017, a 3 (and
// no 4) means brats2023; a volume with neither (no enhancing tumor, or no tumor) decides
// nothing and gives nullopt. A volume holding both 3 and 4, or any label above 4, throws.
inline std::optional<LabelConvention> detect_label_convention(
    const Tensor<std::uint8_t>& labels, const std::string& case_id = {}) {
  std::array<index_t, 256> first_at;
  first_at.fill(-1);
  for (index_t i = labels.numel() - 1; i >= 0; --i) first_at[labels[i]] = i;
  for (int value = 5; value < 256; ++value) {
    REVOX_CHECK(first_at[value] < 0, detail::case_prefix(case_id), "label ", value, " at voxel ",
                detail::voxel_position(labels.shape(), first_at[value]),
                " is not a BraTS label (expected {0, 1, 2, 4} or {0, 1, 2, 3})");
  }
  const bool has3 = first_at[3] >= 0;
  const bool has4 = first_at[4] >= 0;
  REVOX_CHECK(!(has3 && has4), detail::case_prefix(case_id),
              "the labels mix 3 (BraTS 2023 enhancing tumor, first at ",
              detail::voxel_position(labels.shape(), first_at[3]),
              ") and 4 (BraTS 2017-2021 enhancing tumor, first at ",
              detail::voxel_position(labels.shape(), first_at[4]), ")");
  if (has4) return LabelConvention::brats2017;
  if (has3) return LabelConvention::brats2023;
  return std::nullopt;
}

// Throws revox::Error naming the case, the label and its voxel when a label is outside the
// convention's set.
inline void check_labels(const Tensor<std::uint8_t>& labels, LabelConvention convention,
                         const std::string& case_id = {}) {
  for (index_t i = 0; i < labels.numel(); ++i) {
    REVOX_CHECK(detail::is_label_of(convention, labels[i]), detail::case_prefix(case_id),
                "label ", static_cast<int>(labels[i]), " at voxel ",
                detail::voxel_position(labels.shape(), i), " is not one of the ",
                to_string(convention),
                labels[i] == 3 || labels[i] == 4 ? " (is the label convention right?)" : "");
  }
}

// Converts a segmentation read as float (NIfTI stores labels in many data types) into
// labels, checking that every value is finite, integral and in the convention's set.
// `convention` nullopt accepts either set (and detect_label_convention then decides).
// `source` (e.g. the file) is named in messages.
inline Tensor<std::uint8_t> labels_from_volume(const Tensor<float>& volume,
                                               std::optional<LabelConvention> convention,
                                               const std::string& case_id,
                                               const std::string& source = {}) {
  const std::string where = source.empty() ? std::string() : " of " + source;
  Tensor<std::uint8_t> labels(volume.shape());
  for (index_t i = 0; i < volume.numel(); ++i) {
    const float value = volume[i];
    REVOX_CHECK(std::isfinite(value) && std::nearbyint(value) == value,
                detail::case_prefix(case_id), "segmentation", where, " has the non-integral label ",
                value, " at voxel ", detail::voxel_position(volume.shape(), i));
    const bool known = convention ? detail::is_label_of(*convention, static_cast<index_t>(value))
                                  : (value >= 0.0f && value <= 4.0f);
    REVOX_CHECK(known, detail::case_prefix(case_id), "segmentation", where, " has label ", value,
                " at voxel ", detail::voxel_position(volume.shape(), i), ", not one of the ",
                convention ? to_string(*convention)
                           : "BraTS labels {0, 1, 2, 4} (2017-2021) or {0, 1, 2, 3} (2023)");
    labels[i] = static_cast<std::uint8_t>(value);
  }
  return labels;
}

// Region targets (N, 3, D, H, W) with channels WT, TC, ET in {0, 1} from labels
// (N, 1, D, H, W). Labels outside the convention's set throw.
inline Tensor<float> region_targets(const Tensor<std::uint8_t>& labels,
                                    LabelConvention convention,
                                    const std::string& case_id = {}) {
  const Shape5 s = labels.shape();
  REVOX_CHECK(s.c == 1, "region_targets: labels must have 1 channel, got ", s);
  check_labels(labels, convention, case_id);
  const std::uint8_t enhancing = enhancing_label(convention);
  Tensor<float> regions(s.with_channels(3));
  const index_t voxels = s.spatial();
  for (index_t n = 0; n < s.n; ++n) {
    const std::uint8_t* label = labels.data() + n * voxels;
    float* wt = regions.data() + (n * 3 + 0) * voxels;
    float* tc = regions.data() + (n * 3 + 1) * voxels;
    float* et = regions.data() + (n * 3 + 2) * voxels;
    for (index_t i = 0; i < voxels; ++i) {
      const std::uint8_t v = label[i];
      wt[i] = v != 0 ? 1.0f : 0.0f;
      tc[i] = v == 1 || v == enhancing ? 1.0f : 0.0f;
      et[i] = v == enhancing ? 1.0f : 0.0f;
    }
  }
  return regions;
}

// Labels (N, 1, D, H, W) from region masks or probabilities (N, 3, D, H, W) = WT, TC, ET,
// a region being present where its value is above `threshold`. Nested as in BraTS:
// ET -> enhancing label (4 or 3), else TC -> 1, else WT -> 2, else 0.
inline Tensor<std::uint8_t> labels_from_regions(const Tensor<float>& regions,
                                                LabelConvention convention,
                                                float threshold = 0.5f) {
  const Shape5 s = regions.shape();
  REVOX_CHECK(s.c == 3, "labels_from_regions: regions must have 3 channels (WT, TC, ET), got ",
              s);
  const std::uint8_t enhancing = enhancing_label(convention);
  Tensor<std::uint8_t> labels(s.with_channels(1));
  const index_t voxels = s.spatial();
  for (index_t n = 0; n < s.n; ++n) {
    const float* wt = regions.data() + (n * 3 + 0) * voxels;
    const float* tc = regions.data() + (n * 3 + 1) * voxels;
    const float* et = regions.data() + (n * 3 + 2) * voxels;
    std::uint8_t* label = labels.data() + n * voxels;
    for (index_t i = 0; i < voxels; ++i) {
      label[i] = et[i] > threshold   ? enhancing
                 : tc[i] > threshold ? std::uint8_t{1}
                 : wt[i] > threshold ? std::uint8_t{2}
                                     : std::uint8_t{0};
    }
  }
  return labels;
}

struct LoadOptions {
  // nullopt: decided by the labels (detect_label_convention), else by the case's naming.
  // Set it to reject the other convention's labels.
  std::optional<LabelConvention> label_convention;
  bool load_segmentation = true;
  // How far (mm) spacing and affine of a case's volumes may differ.
  double geometry_tolerance = 1e-3;
  // If set, every volume must have this size (D, H, W), e.g. {155, 240, 240} for BraTS.
  std::optional<std::array<index_t, 3>> expected_size;
  // NaN/Inf voxels of the modalities: an error (default) or set to 0 (then listed in
  // LoadedCase::zeroed). A segmentation with NaN/Inf is always an error.
  io::NanPolicy nan_policy = io::NanPolicy::error;
  // Byte limit per volume (io::NiftiReadOptions::max_bytes); 0: the reader's default.
  std::uint64_t max_bytes = 0;
};

// NaN/Inf voxels that LoadOptions::nan_policy zero set to 0 in one modality file.
struct ZeroedVoxels {
  std::string role;  // e.g. "modality flair"
  std::filesystem::path file;
  std::int64_t count = 0;
};

struct LoadedCase {
  std::string id;
  Tensor<float> image;                         // (1, 4, D, H, W): t1, t1ce, t2, flair
  std::optional<Tensor<std::uint8_t>> labels;  // (1, 1, D, H, W), raw BraTS labels
  LabelConvention label_convention = LabelConvention::brats2017;
  io::NiftiGeometry geometry;                  // of the t1 volume; the others match it
  std::vector<ZeroedVoxels> zeroed;            // files with NaN/Inf set to 0 (policy zero)
};

// "BraTS case <id>, <role> '<file>': N NaN/Inf voxels set to 0 (NaN policy zero)".
inline std::string describe_zeroed(const std::string& case_id, const ZeroedVoxels& zeroed) {
  return revox::detail::concat("BraTS case ", case_id, ", ", zeroed.role, " '",
                               zeroed.file.string(), "': ", zeroed.count, " NaN/Inf voxel",
                               zeroed.count == 1 ? "" : "s", " set to 0 (NaN policy zero)");
}

namespace detail {

inline std::string size_text(const Shape5& shape) {
  return revox::detail::concat(shape.w, " x ", shape.h, " x ", shape.d, " (W x H x D)");
}

inline std::string geometry_text(const io::NiftiGeometry& geometry) {
  std::ostringstream out;
  out << "spacing (" << geometry.spacing[0] << ", " << geometry.spacing[1] << ", "
      << geometry.spacing[2] << ") mm, affine [";
  const auto affine = geometry.affine();
  for (int r = 0; r < 3; ++r) {
    out << (r == 0 ? "[" : ", [");
    for (int c = 0; c < 4; ++c) out << (c == 0 ? "" : ", ") << affine[r][c];
    out << "]";
  }
  out << "]";
  return out.str();
}

// What a NaN/Inf error in a segmentation says instead of suggesting the NaN policy.
inline constexpr const char* kLabelNanHint =
    " (a segmentation must hold finite labels; the NaN policy applies to images only)";

// read_nifti, with the case and the volume's role added to its messages.
inline io::NiftiVolume read_case_volume(const std::string& case_id, const std::string& role,
                                        const std::filesystem::path& path,
                                        const io::NiftiReadOptions& options = {}) {
  try {
    return io::read_nifti(path, options);
  } catch (const InternalError&) {
    throw;
  } catch (const Error& error) {
    throw Error(revox::detail::concat("BraTS case ", case_id, ", ", role, ": ", error.what()));
  }
}

inline void check_same_grid(const std::string& case_id, const std::string& role,
                            const std::filesystem::path& path, const io::NiftiVolume& volume,
                            const std::filesystem::path& reference_path,
                            const io::NiftiVolume& reference, double tolerance) {
  REVOX_CHECK(volume.data.shape() == reference.data.shape(), "BraTS case ", case_id, ": ", role,
              " '", path.string(), "' is ", size_text(volume.data.shape()), " but t1 '",
              reference_path.string(), "' is ", size_text(reference.data.shape()));
  REVOX_CHECK(volume.geometry.matches(reference.geometry, tolerance), "BraTS case ", case_id,
              ": ", role, " '", path.string(), "' has another geometry than t1 '",
              reference_path.string(), "' (tolerance ", tolerance, " mm): ",
              geometry_text(volume.geometry), " vs ", geometry_text(reference.geometry));
}

}  // namespace detail

inline LoadedCase load_brats_case(const BratsCase& brats_case, const LoadOptions& options = {}) {
  const std::string& id = brats_case.id;
  LoadedCase loaded;
  loaded.id = id;
  io::NiftiVolume first;
  for (std::size_t m = 0; m < brats_case.modalities.size(); ++m) {
    const std::filesystem::path& path = brats_case.modalities[m];
    const std::string role = std::string("modality ") + modality_suffixes(brats_case.naming)[m];
    io::NiftiReadOptions read_options;
    read_options.nan_policy = options.nan_policy;
    read_options.max_bytes = options.max_bytes;
    io::NiftiVolume volume = detail::read_case_volume(id, role, path, read_options);
    if (volume.non_finite_zeroed > 0) {
      loaded.zeroed.push_back(ZeroedVoxels{role, path, volume.non_finite_zeroed});
    }
    const Shape5 shape = volume.data.shape();
    if (m == 0) {
      if (options.expected_size) {
        const auto& e = *options.expected_size;
        REVOX_CHECK(shape.d == e[0] && shape.h == e[1] && shape.w == e[2], "BraTS case ", id,
                    ": ", role, " '", path.string(), "' is ", detail::size_text(shape),
                    ", expected ", detail::size_text(Shape5{1, 1, e[0], e[1], e[2]}));
      }
      loaded.image = Tensor<float>(shape.with_channels(4));
      loaded.geometry = volume.geometry;
    } else {
      detail::check_same_grid(id, role, path, volume, brats_case.modalities[0], first,
                              options.geometry_tolerance);
    }
    const float* values = volume.data.data();
    const auto [low, high] = std::minmax_element(values, values + volume.data.numel());
    REVOX_CHECK(volume.data.numel() == 0 || *low != *high, "BraTS case ", id, ": ", role, " '",
                path.string(), "' is constant (every voxel is ", *low,
                "), so it carries no image and cannot be z-score normalised");
    std::copy(values, values + volume.data.numel(), loaded.image.data() + m * shape.spatial());
    if (m == 0) first = std::move(volume);
  }

  loaded.label_convention =
      options.label_convention.value_or(default_label_convention(brats_case.naming));
  if (brats_case.segmentation && options.load_segmentation) {
    const std::filesystem::path& path = *brats_case.segmentation;
    io::NiftiReadOptions read_options;
    read_options.max_bytes = options.max_bytes;
    read_options.nan_hint = detail::kLabelNanHint;  // labels: always NanPolicy::error
    const io::NiftiVolume volume =
        detail::read_case_volume(id, "segmentation", path, read_options);
    detail::check_same_grid(id, "segmentation", path, volume, brats_case.modalities[0], first,
                            options.geometry_tolerance);
    Tensor<std::uint8_t> labels =
        labels_from_volume(volume.data, options.label_convention, id, path.string());
    if (!options.label_convention) {
      loaded.label_convention =
          detect_label_convention(labels, id).value_or(loaded.label_convention);
    }
    loaded.labels = std::move(labels);
  }
  return loaded;
}

}  // namespace revox::data
