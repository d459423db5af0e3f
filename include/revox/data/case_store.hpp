// revox/data/case_store.hpp — preprocessed BraTS cases on disk, mapped instead of loaded.
//
// A BraTS training set is large (BraTS 2021: 1,251 cases of 4 x 240 x 240 x 155 voxels,
// 179 GB as float32) and reading it from .nii.gz is slow (about 0.7 s per case). A case is
// therefore prepared once (prepare_case): cropped to the bounding box of the head (voxels
// non-zero in any modality or labelled) plus a margin, z-scored per modality over its
// non-zero voxels (zscore_nonzero; the crop keeps every non-zero voxel, so the statistics
// are those of the uncropped volume), and the flat voxel indices of each tumour region (WT,
// TC, ET) are listed for foreground patch sampling. write_case_file stores it as one
// uncompressed safetensors file:
//
//   tensors   image          F32  (1, 4, d, h, w)  z-scored t1, t1ce, t2, flair
//             labels         U8   (1, 1, d, h, w)  raw BraTS labels (absent without a
//                                                  segmentation)
//             foreground_wt  I32  (n_wt)           flat indices into the cropped grid
//             foreground_tc  I32  (n_tc)
//             foreground_et  I32  (n_et)
//   metadata  "revox_case"   CaseInfo as JSON: id, source folder, original size, crop
//                            start and size, NIfTI geometry, label convention, region voxel
//                            counts, the source files' fingerprints (size, mtime), the file's
//                            data checksum
//
// The safetensors writer puts the header length, a header padded to 8 bytes, then the
// tensors by decreasing element size, so every array is aligned in the file and
// map_case_file can point straight into a read-only mapping (mmap): opening a case reads
// only its header; the pages of a patch are read when the patch is cut, and unmapping the
// case returns them. Files are written atomically (temporary file, fsync, verification,
// rename), so a file under its final name is complete.
//
// A preprocessed dataset is a folder with cases/<id>.safetensors and index.json (CaseIndex:
// format version, settings, every case's CaseInfo, the cases that failed), written last and
// atomically by preprocess_dataset. Reading the index and stat-ing each case file
// (check_case_files) is all a trainer needs to start; check_sources reports source files that
// changed or disappeared since.
//
// preprocess_dataset runs over a thread pool (one case per worker at a time, each worker
// single-threaded); a case whose valid file already exists with the same source
// fingerprints and settings is skipped, so an interrupted run resumes where it stopped; a
// case that fails is reported (with the file and the problem) and, unless `strict`, the
// others go on.
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "revox/core/error.hpp"
#include "revox/core/tensor.hpp"
#include "revox/data/brats.hpp"
#include "revox/data/preprocess.hpp"
#include "revox/io/nifti.hpp"
#include "revox/io/safetensors.hpp"

namespace revox::data {

inline constexpr int kCaseFormatVersion = 1;
inline constexpr const char* kCaseIndexName = "index.json";
inline constexpr const char* kCaseIndexFormat = "revox-preprocessed-brats";

// A source file as it was when a case was prepared: a change of size or modification time
// marks the case as stale.
struct SourceFile {
  std::string path;  // absolute
  std::uint64_t bytes = 0;
  std::int64_t mtime_ns = 0;
  friend bool operator==(const SourceFile& a, const SourceFile& b) {
    return a.path == b.path && a.bytes == b.bytes && a.mtime_ns == b.mtime_ns;
  }
};

// The fingerprint of `path` now; nullopt when it cannot be stat-ed (missing).
inline std::optional<SourceFile> fingerprint(const std::filesystem::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  SourceFile f;
  std::error_code ec;
  const auto absolute = std::filesystem::absolute(path, ec);
  f.path = (ec ? path : absolute).lexically_normal().string();
  f.bytes = static_cast<std::uint64_t>(st.st_size);
  f.mtime_ns = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec;
  return f;
}

// What is known about a prepared case without reading its arrays.
struct CaseInfo {
  std::string id;
  std::string file;    // the case file, relative to the preprocessed folder ("" in memory)
  std::string folder;  // the source case folder (absolute; "" when unknown)
  Size3 original{};    // D, H, W of the source volumes
  Size3 start{};       // the crop's first voxel in the original grid
  Size3 size{};        // D, H, W of the stored (cropped) volumes
  io::NiftiGeometry geometry;
  LabelConvention convention = LabelConvention::brats2017;
  bool has_labels = false;
  std::array<std::int64_t, 3> foreground{};  // voxels of WT, TC, ET
  std::vector<SourceFile> sources;           // t1, t1ce, t2, flair, segmentation
  std::uint64_t bytes = 0;                   // size of the case file
  std::uint64_t checksum = 0;                // of the arrays (case_checksum)
  int margin = 0;                            // crop margin (voxels)
  std::string nan_policy = "error";

  // The crop as a data::CropPad (source = original, target = size): crop_or_pad cuts the box
  // out of an original-grid volume, undo_crop_or_pad puts a stored-grid prediction back.
  CropPad crop() const {
    return CropPad{original, size, {-start[0], -start[1], -start[2]}};
  }
};

inline nlohmann::json to_json(const io::NiftiGeometry& g) {
  return {{"spacing", g.spacing},     {"qform_code", g.qform_code}, {"sform_code", g.sform_code},
          {"quatern_b", g.quatern_b}, {"quatern_c", g.quatern_c},   {"quatern_d", g.quatern_d},
          {"qoffset_x", g.qoffset_x}, {"qoffset_y", g.qoffset_y},   {"qoffset_z", g.qoffset_z},
          {"qfac", g.qfac},           {"srow", g.srow}};
}

inline io::NiftiGeometry geometry_from_json(const nlohmann::json& j) {
  io::NiftiGeometry g;
  g.spacing = j.at("spacing").get<std::array<double, 3>>();
  g.qform_code = j.at("qform_code").get<int>();
  g.sform_code = j.at("sform_code").get<int>();
  g.quatern_b = j.at("quatern_b").get<double>();
  g.quatern_c = j.at("quatern_c").get<double>();
  g.quatern_d = j.at("quatern_d").get<double>();
  g.qoffset_x = j.at("qoffset_x").get<double>();
  g.qoffset_y = j.at("qoffset_y").get<double>();
  g.qoffset_z = j.at("qoffset_z").get<double>();
  g.qfac = j.at("qfac").get<double>();
  g.srow = j.at("srow").get<std::array<std::array<double, 4>, 3>>();
  return g;
}

inline nlohmann::json to_json(const CaseInfo& c) {
  nlohmann::json sources = nlohmann::json::array();
  for (const auto& s : c.sources) {
    sources.push_back({{"path", s.path}, {"bytes", s.bytes}, {"mtime_ns", s.mtime_ns}});
  }
  return {{"id", c.id},
          {"file", c.file},
          {"folder", c.folder},
          {"original", c.original},
          {"start", c.start},
          {"size", c.size},
          {"geometry", to_json(c.geometry)},
          {"labels", c.has_labels ? (c.convention == LabelConvention::brats2017 ? "brats2017"
                                                                                : "brats2023")
                                  : "none"},
          {"foreground", c.foreground},
          {"sources", sources},
          {"bytes", c.bytes},
          {"checksum", std::to_string(c.checksum)},
          {"margin", c.margin},
          {"nan_policy", c.nan_policy}};
}

// `where` names the file the JSON came from, for messages.
inline CaseInfo case_info_from_json(const nlohmann::json& j, const std::string& where) {
  try {
    CaseInfo c;
    c.id = j.at("id").get<std::string>();
    c.file = j.at("file").get<std::string>();
    c.folder = j.at("folder").get<std::string>();
    c.original = j.at("original").get<Size3>();
    c.start = j.at("start").get<Size3>();
    c.size = j.at("size").get<Size3>();
    c.geometry = geometry_from_json(j.at("geometry"));
    const auto labels = j.at("labels").get<std::string>();
    REVOX_CHECK(labels == "brats2017" || labels == "brats2023" || labels == "none",
                "'labels' must be brats2017, brats2023 or none, got '", labels, "'");
    c.has_labels = labels != "none";
    c.convention = labels == "brats2023" ? LabelConvention::brats2023 : LabelConvention::brats2017;
    c.foreground = j.at("foreground").get<std::array<std::int64_t, 3>>();
    for (const auto& s : j.at("sources")) {
      c.sources.push_back(SourceFile{s.at("path").get<std::string>(),
                                     s.at("bytes").get<std::uint64_t>(),
                                     s.at("mtime_ns").get<std::int64_t>()});
    }
    c.bytes = j.at("bytes").get<std::uint64_t>();
    c.checksum = std::stoull(j.at("checksum").get<std::string>());
    c.margin = j.at("margin").get<int>();
    c.nan_policy = j.at("nan_policy").get<std::string>();
    for (int a = 0; a < 3; ++a) {
      REVOX_CHECK(c.size[a] > 0 && c.start[a] >= 0 && c.start[a] + c.size[a] <= c.original[a],
                  "the crop (start ", c.start[a], ", size ", c.size[a], ") does not fit the "
                  "original extent ", c.original[a], " on axis ", a);
    }
    return c;
  } catch (const InternalError&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(revox::detail::concat(where, ": a case entry is damaged: ", e.what()));
  }
}

// A prepared case's arrays, owned (in memory) or mapped from its file.
class CaseArrays {
 public:
  virtual ~CaseArrays() = default;
  TensorView<const float> image;          // (1, 4, d, h, w)
  TensorView<const std::uint8_t> labels;  // (1, 1, d, h, w); data == nullptr without labels
  std::array<const std::int32_t*, 3> foreground{};
  std::array<std::size_t, 3> foreground_count{};
  std::uint64_t bytes = 0;  // memory held: allocated, or the length of the mapping
};

class OwnedCaseArrays final : public CaseArrays {
 public:
  Tensor<float> image_tensor;
  Tensor<std::uint8_t> labels_tensor;
  std::array<std::vector<std::int32_t>, 3> foreground_lists;

  // Points the views at the owned storage (after it is filled).
  void bind() {
    image = image_tensor.cview();
    labels = labels_tensor.numel() > 0 ? labels_tensor.cview() : TensorView<const std::uint8_t>{};
    bytes = static_cast<std::uint64_t>(image_tensor.numel()) * sizeof(float) +
            static_cast<std::uint64_t>(labels_tensor.numel());
    for (std::size_t r = 0; r < 3; ++r) {
      foreground[r] = foreground_lists[r].data();
      foreground_count[r] = foreground_lists[r].size();
      bytes += foreground_lists[r].size() * sizeof(std::int32_t);
    }
  }
};

class MappedCaseArrays final : public CaseArrays {
 public:
  MappedCaseArrays(void* map, std::size_t length) : map_(map), length_(length) {
    bytes = length;
  }
  MappedCaseArrays(const MappedCaseArrays&) = delete;
  MappedCaseArrays& operator=(const MappedCaseArrays&) = delete;
  ~MappedCaseArrays() override {
    if (map_ != nullptr) ::munmap(map_, length_);
  }
  const std::uint8_t* base() const { return static_cast<const std::uint8_t*>(map_); }

 private:
  void* map_;
  std::size_t length_;
};

// A 64-bit checksum of byte ranges, 8 bytes at a time (about 3 GB/s): detects damaged case
// files (it is not a cryptographic hash).
class Checksum {
 public:
  void add(const void* data, std::size_t bytes) {
    const auto* p = static_cast<const std::uint8_t*>(data);
    std::size_t i = 0;
    for (; i + 8 <= bytes; i += 8) {
      std::uint64_t w;
      std::memcpy(&w, p + i, 8);
      mix(w);
    }
    std::uint64_t tail = 0;
    if (bytes > i) std::memcpy(&tail, p + i, bytes - i);  // p may be null when bytes == 0
    mix(tail ^ (static_cast<std::uint64_t>(bytes) << 56));
  }
  std::uint64_t value() const { return h_; }

 private:
  void mix(std::uint64_t w) {
    h_ ^= w;
    h_ *= 0x9e3779b97f4a7c15ull;
    h_ ^= h_ >> 29;
  }
  std::uint64_t h_ = 0x243f6a8885a308d3ull;
};

inline std::uint64_t case_checksum(const CaseArrays& a) {
  Checksum sum;
  sum.add(a.image.data, static_cast<std::size_t>(a.image.numel()) * sizeof(float));
  if (a.labels.data != nullptr) sum.add(a.labels.data, static_cast<std::size_t>(a.labels.numel()));
  for (std::size_t r = 0; r < 3; ++r) {
    sum.add(a.foreground[r], a.foreground_count[r] * sizeof(std::int32_t));
  }
  return sum.value();
}

struct PreparedCase {
  CaseInfo info;
  std::shared_ptr<OwnedCaseArrays> arrays;
};

// The region masks' flat indices of raw labels (WT = any label, TC = 1 or ET, ET = ET).
inline std::array<std::vector<std::int32_t>, 3> foreground_indices(
    TensorView<const std::uint8_t> labels, LabelConvention convention) {
  REVOX_CHECK(labels.numel() < (index_t{1} << 31), "foreground_indices: ", labels.numel(),
              " voxels do not fit 32-bit indices");
  const std::uint8_t et = enhancing_label(convention);
  std::array<std::vector<std::int32_t>, 3> lists;
  for (index_t i = 0; i < labels.numel(); ++i) {
    const std::uint8_t v = labels.data[i];
    if (v == 0) continue;
    const auto at = static_cast<std::int32_t>(i);
    lists[0].push_back(at);
    if (v == 1 || v == et) lists[1].push_back(at);
    if (v == et) lists[2].push_back(at);
  }
  return lists;
}

// The box of the voxels that are non-zero in any channel of `image` (1, C, D, H, W) or, when
// `labels` is given (same grid), labelled, widened by `margin` voxels on every side and
// clamped to the volume, as the CropPad that cuts it out (source = the volume's size,
// target = the box's, offset = -the box's first voxel). nullopt when no voxel is non-zero.
// The same box crops training cases (prepare_case) and the volumes predicted
// (examples/brats/inference.hpp), so the network sees heads cropped alike in both.
inline std::optional<CropPad> nonzero_box(TensorView<const float> image,
                                          const std::uint8_t* labels, int margin) {
  REVOX_CHECK(margin >= 0, "nonzero_box: margin must be >= 0, got ", margin);
  const Shape5 s = image.shape;
  REVOX_CHECK(s.n == 1, "nonzero_box: expected one volume (N = 1), got ", s);
  Size3 lo{s.d, s.h, s.w}, hi{-1, -1, -1};
  const index_t voxels = s.spatial();
  for (index_t d = 0; d < s.d; ++d) {
    for (index_t h = 0; h < s.h; ++h) {
      const index_t row = (d * s.h + h) * s.w;
      for (index_t w = 0; w < s.w; ++w) {
        const index_t i = row + w;
        bool any = labels != nullptr && labels[i] != 0;
        for (index_t c = 0; c < s.c && !any; ++c) any = image.data[c * voxels + i] != 0.0f;
        if (!any) continue;
        lo = {std::min(lo[0], d), std::min(lo[1], h), std::min(lo[2], w)};
        hi = {std::max(hi[0], d), std::max(hi[1], h), std::max(hi[2], w)};
      }
    }
  }
  if (hi[0] < 0) return std::nullopt;
  const Size3 size{s.d, s.h, s.w};
  CropPad box{size, {}, {}};
  for (int a = 0; a < 3; ++a) {
    const index_t start = std::max<index_t>(0, lo[a] - margin);
    box.target[a] = std::min<index_t>(size[a], hi[a] + 1 + margin) - start;
    box.offset[a] = -start;
  }
  return box;
}

// Crops a loaded case to nonzero_box (modalities and labels, widened by `margin`),
// z-scores it and lists its foreground. Throws (naming the case) when every voxel is zero
// or a modality cannot be normalised.
inline PreparedCase prepare_case(LoadedCase&& loaded, int margin = 2,
                                 const std::string& folder = {}) {
  REVOX_CHECK(margin >= 0, "prepare_case: margin must be >= 0, got ", margin);
  const Shape5 s = loaded.image.shape();
  REVOX_CHECK(s.n == 1 && s.c == 4, "prepare_case: case ", loaded.id,
              ": expected a (1, 4, D, H, W) image, got ", s);
  const Size3 original{s.d, s.h, s.w};
  const auto box = nonzero_box(loaded.image.cview(),
                               loaded.labels ? loaded.labels->data() : nullptr, margin);
  REVOX_CHECK(box.has_value(), "BraTS case ", loaded.id, ": every voxel of every modality is "
              "zero (no head to crop to)");
  PreparedCase out;
  CaseInfo& info = out.info;
  info.id = loaded.id;
  info.folder = folder;
  info.original = original;
  info.margin = margin;
  for (int a = 0; a < 3; ++a) {
    info.start[a] = -box->offset[a];
    info.size[a] = box->target[a];
  }
  info.geometry = loaded.geometry;
  info.convention = loaded.label_convention;
  info.has_labels = loaded.labels.has_value();
  out.arrays = std::make_shared<OwnedCaseArrays>();
  OwnedCaseArrays& arrays = *out.arrays;
  // Cutting the box out of the original grid (info.crop(): source original, target the box).
  const CropPad cut = info.crop();
  arrays.image_tensor = crop_or_pad(loaded.image, cut);
  loaded.image = Tensor<float>();
  zscore_nonzero(arrays.image_tensor, loaded.id);
  if (loaded.labels) {
    arrays.labels_tensor = crop_or_pad(*loaded.labels, cut);
    loaded.labels.reset();
    arrays.foreground_lists = foreground_indices(arrays.labels_tensor.cview(), info.convention);
  }
  for (std::size_t r = 0; r < 3; ++r) {
    info.foreground[r] = static_cast<std::int64_t>(arrays.foreground_lists[r].size());
  }
  arrays.bind();
  info.checksum = case_checksum(arrays);
  return out;
}

namespace detail {

template <class T>
io::SafeTensor safe_tensor_of(const T* data, std::size_t count, std::vector<std::int64_t> shape) {
  io::SafeTensor t;
  t.dtype = io::detail::dtype_of<T>();
  t.shape = std::move(shape);
  t.bytes.resize(count * sizeof(T));
  if (count > 0) std::memcpy(t.bytes.data(), data, count * sizeof(T));
  return t;
}

inline std::vector<std::int64_t> shape_of(const Shape5& s) {
  return {s.n, s.c, s.d, s.h, s.w};
}

inline const char* kRegionTensor[3] = {"foreground_wt", "foreground_tc", "foreground_et"};

}  // namespace detail

// Writes a prepared case atomically to `path`; sets info.file (the file name) and
// info.bytes. `before_rename` is passed to io::write_safetensors (tests stop the writer there).
inline void write_case_file(const std::filesystem::path& path, CaseInfo& info,
                            const CaseArrays& arrays,
                            const std::function<void(const std::filesystem::path&)>&
                                before_rename = nullptr) {
  std::map<std::string, io::SafeTensor> tensors;
  tensors["image"] = detail::safe_tensor_of(arrays.image.data,
                                            static_cast<std::size_t>(arrays.image.numel()),
                                            detail::shape_of(arrays.image.shape));
  if (arrays.labels.data != nullptr) {
    tensors["labels"] = detail::safe_tensor_of(arrays.labels.data,
                                               static_cast<std::size_t>(arrays.labels.numel()),
                                               detail::shape_of(arrays.labels.shape));
  }
  for (std::size_t r = 0; r < 3; ++r) {
    const auto n = static_cast<std::int64_t>(arrays.foreground_count[r]);
    tensors[detail::kRegionTensor[r]] =
        detail::safe_tensor_of(arrays.foreground[r], arrays.foreground_count[r], {n});
  }
  info.file = path.filename().string();
  info.bytes = 0;  // the metadata cannot hold the size of the file it is in
  io::write_safetensors(path, tensors, {{"revox_case", to_json(info).dump()}}, before_rename);
  std::error_code ec;
  info.bytes = std::filesystem::file_size(path, ec);
  REVOX_CHECK(!ec, "cannot get the size of '", path.string(), "': ", ec.message());
}

struct MappedCase {
  CaseInfo info;  // from the file's metadata (bytes: the file's size)
  std::shared_ptr<const MappedCaseArrays> arrays;
};

// Maps a case file read-only and points the arrays into it. Checks the header, the tensors'
// dtypes and shapes against the metadata; `verify` also recomputes the checksum (reads every
// page). Throws revox::Error naming the file and the problem.
inline MappedCase map_case_file(const std::filesystem::path& path, bool verify = false) {
  auto fail = [&](auto&&... parts) -> void {
    throw Error(revox::detail::concat("preprocessed case '", path.string(), "': ", parts...,
                                      " (rerun `revox-brats preprocess` to rewrite it)"));
  };
  io::SafetensorsHeader header;
  try {
    header = io::read_safetensors_header(path);
  } catch (const InternalError&) {
    throw;
  } catch (const Error& e) {
    fail(e.what());
  }
  const auto meta = header.metadata.find("revox_case");
  if (meta == header.metadata.end()) fail("no 'revox_case' metadata: not a preprocessed case");
  MappedCase out;
  try {
    out.info = case_info_from_json(nlohmann::json::parse(meta->second), path.string());
  } catch (const nlohmann::json::exception& e) {
    fail("its 'revox_case' metadata is not valid JSON: ", e.what());
  }
  const CaseInfo& info = out.info;
  const index_t d = info.size[0], h = info.size[1], w = info.size[2];
  auto expect = [&](const std::string& name, io::Dtype dtype,
                    const std::vector<std::int64_t>& shape) -> const io::SafeTensorInfo& {
    const auto it = header.tensors.find(name);
    if (it == header.tensors.end()) fail("no tensor '", name, "'");
    if (it->second.dtype != dtype || it->second.shape != shape) {
      fail("tensor '", name, "' is ", io::dtype_name(it->second.dtype), " of ",
           it->second.shape.size(), " dimensions, not the ", io::dtype_name(dtype),
           " its metadata describes");
    }
    const std::uint64_t offset = 8 + header.header_bytes + it->second.begin;
    if (offset % io::dtype_size(dtype) != 0) fail("tensor '", name, "' is not aligned");
    return it->second;
  };
  const auto& image = expect("image", io::Dtype::F32, {1, 4, d, h, w});
  const io::SafeTensorInfo* labels = nullptr;
  if (info.has_labels) labels = &expect("labels", io::Dtype::U8, {1, 1, d, h, w});
  std::array<const io::SafeTensorInfo*, 3> regions{};
  for (std::size_t r = 0; r < 3; ++r) {
    regions[r] = &expect(detail::kRegionTensor[r], io::Dtype::I32, {info.foreground[r]});
  }
  const std::size_t length = static_cast<std::size_t>(8 + header.header_bytes + header.data_bytes);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("cannot open (", std::strerror(errno), ")");
  void* map = ::mmap(nullptr, length, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_error = errno;
  ::close(fd);
  if (map == MAP_FAILED) fail("cannot map its ", length, " bytes (", std::strerror(map_error), ")");
  auto arrays = std::make_shared<MappedCaseArrays>(map, length);
  const std::uint8_t* data = arrays->base() + 8 + header.header_bytes;
  arrays->image = TensorView<const float>{reinterpret_cast<const float*>(data + image.begin),
                                          Shape5{1, 4, d, h, w}};
  if (labels != nullptr) {
    arrays->labels = TensorView<const std::uint8_t>{data + labels->begin, Shape5{1, 1, d, h, w}};
  }
  for (std::size_t r = 0; r < 3; ++r) {
    arrays->foreground[r] = reinterpret_cast<const std::int32_t*>(data + regions[r]->begin);
    arrays->foreground_count[r] = static_cast<std::size_t>(info.foreground[r]);
  }
  if (verify && case_checksum(*arrays) != info.checksum) {
    fail("its arrays do not match their checksum (the file is damaged)");
  }
  out.info.bytes = length;
  out.arrays = std::move(arrays);
  return out;
}

// ---- the index -----------------------------------------------------------------------

struct FailedCase {
  std::string id;
  std::string error;
};

struct CaseIndex {
  std::filesystem::path folder;  // where index.json and cases/ are
  std::string source;            // the raw dataset folder (absolute)
  int margin = 2;
  std::string nan_policy = "error";
  std::vector<CaseInfo> cases;   // sorted by id
  std::vector<FailedCase> failed;

  std::filesystem::path case_path(const CaseInfo& c) const { return folder / "cases" / c.file; }
  std::uint64_t total_bytes() const {
    std::uint64_t b = 0;
    for (const auto& c : cases) b += c.bytes;
    return b;
  }
};

inline bool is_preprocessed_folder(const std::filesystem::path& folder) {
  std::error_code ec;
  return std::filesystem::is_regular_file(folder / kCaseIndexName, ec);
}

namespace detail {

inline void write_text_file_atomic(const std::filesystem::path& path, const std::string& text) {
  const std::filesystem::path tmp = path.string() + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  REVOX_CHECK(fd >= 0, "cannot write '", tmp.string(), "': ", std::strerror(errno));
  int error = io::detail::write_all(fd, text.data(), text.size());
  if (error == 0 && ::fsync(fd) != 0) error = errno;
  if (::close(fd) != 0 && error == 0) error = errno;
  if (error != 0) {
    ::unlink(tmp.c_str());
    throw Error(revox::detail::concat("cannot write '", tmp.string(), "': ",
                                      io::detail::describe_write_error(error), " ('",
                                      path.filename().string(), "' is left as it was)"));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    throw Error(revox::detail::concat("cannot rename '", tmp.string(), "' to '", path.string(),
                                      "': ", std::strerror(e)));
  }
}

}  // namespace detail

inline void write_case_index(const CaseIndex& index) {
  nlohmann::json cases = nlohmann::json::array();
  for (const auto& c : index.cases) cases.push_back(to_json(c));
  nlohmann::json failed = nlohmann::json::array();
  for (const auto& f : index.failed) failed.push_back({{"id", f.id}, {"error", f.error}});
  const nlohmann::json j{{"format", kCaseIndexFormat}, {"version", kCaseFormatVersion},
                         {"source", index.source},     {"margin", index.margin},
                         {"nan_policy", index.nan_policy},
                         {"cases", cases},             {"failed", failed}};
  detail::write_text_file_atomic(index.folder / kCaseIndexName, j.dump(1) + "\n");
}

// Reads FOLDER/index.json; throws naming the file when it is missing or damaged.
inline CaseIndex read_case_index(const std::filesystem::path& folder) {
  const std::filesystem::path path = folder / kCaseIndexName;
  std::error_code ec;
  REVOX_CHECK(std::filesystem::is_regular_file(path, ec), "'", folder.string(), "' has no ",
              kCaseIndexName, ": not a preprocessed dataset, or its preprocessing did not finish "
              "(run `revox-brats preprocess --data RAW --out ", folder.string(), "`)");
  nlohmann::json j;
  try {
    std::ifstream in(path);
    j = nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    throw Error("'" + path.string() + "' is damaged (not JSON: " + e.what() +
                "); rerun `revox-brats preprocess` to rewrite it");
  }
  CaseIndex index;
  index.folder = folder;
  try {
    REVOX_CHECK(j.at("format") == kCaseIndexFormat, "'format' is ", j.at("format").dump(),
                ", not \"", kCaseIndexFormat, "\"");
    REVOX_CHECK(j.at("version") == kCaseFormatVersion, "format version ", j.at("version").dump(),
                " is not the version ", kCaseFormatVersion, " this revox reads; rerun "
                "`revox-brats preprocess` with this revox");
    index.source = j.at("source").get<std::string>();
    index.margin = j.at("margin").get<int>();
    index.nan_policy = j.at("nan_policy").get<std::string>();
    for (const auto& f : j.at("failed")) {
      index.failed.push_back({f.at("id").get<std::string>(), f.at("error").get<std::string>()});
    }
  } catch (const InternalError&) {
    throw;
  } catch (const std::exception& e) {
    throw Error("'" + path.string() + "' is damaged: " + e.what());
  }
  for (const auto& c : j.at("cases")) index.cases.push_back(case_info_from_json(c, path.string()));
  return index;
}

// Stat-s every case file: throws naming the first file that is missing or whose size
// differs from the index (damaged, or replaced). Reads no case data.
inline void check_case_files(const CaseIndex& index) {
  for (const auto& c : index.cases) {
    const auto path = index.case_path(c);
    std::error_code ec;
    const auto bytes = std::filesystem::file_size(path, ec);
    REVOX_CHECK(!ec, "preprocessed case '", path.string(), "' listed in '",
                (index.folder / kCaseIndexName).string(), "' is missing (", ec.message(),
                "); rerun `revox-brats preprocess`");
    REVOX_CHECK(bytes == c.bytes, "preprocessed case '", path.string(), "' has ", bytes,
                " bytes, the index says ", c.bytes, " (damaged or replaced); rerun "
                "`revox-brats preprocess`");
  }
}

struct SourceChange {
  std::string id;
  std::string path;
  bool missing = false;  // else: changed (size or modification time)
};

// Source files that changed or disappeared since the index was written (stat only).
inline std::vector<SourceChange> check_sources(const CaseIndex& index) {
  std::vector<SourceChange> changes;
  for (const auto& c : index.cases) {
    for (const auto& s : c.sources) {
      const auto now = fingerprint(s.path);
      if (!now) {
        changes.push_back({c.id, s.path, true});
      } else if (!(*now == s)) {
        changes.push_back({c.id, s.path, false});
      }
    }
  }
  return changes;
}

// ---- preprocessing a dataset ---------------------------------------------------------

struct PreprocessOptions {
  int threads = 1;     // cases prepared at once
  int margin = 2;      // crop margin (voxels)
  bool strict = false;  // stop at the first failing case
  io::NanPolicy nan_policy = io::NanPolicy::error;
  bool require_segmentation = true;
  // Called by a worker with the temporary file of a case, just before it is renamed into
  // place (tests kill the process there).
  std::function<void(const std::string& id, const std::filesystem::path&)> before_rename;
};

// What happened to one case.
struct PreprocessEvent {
  std::string id;
  enum class Kind { written, skipped, failed } kind = Kind::written;
  std::string error;     // failed: the problem (names the file)
  std::string notes;     // written: e.g. NaN voxels set to zero
  double seconds = 0.0;  // time spent on the case
  std::size_t done = 0;  // cases finished so far (this one included)
  std::size_t total = 0;
};

struct PreprocessSummary {
  std::size_t written = 0, skipped = 0, failed = 0;
  CaseIndex index;
};

inline std::vector<SourceFile> source_fingerprints(const BratsCase& c) {
  std::vector<SourceFile> files;
  auto add = [&](const std::filesystem::path& p) {
    auto f = fingerprint(p);
    REVOX_CHECK(f.has_value(), "BraTS case ", c.id, ": cannot stat '", p.string(), "': ",
                std::strerror(errno));
    files.push_back(*f);
  };
  for (const auto& m : c.modalities) add(m);
  if (c.segmentation) add(*c.segmentation);
  return files;
}

// Prepares every case under `raw` into `out` (see the top of this file). `on_event` is called
// (under a lock, from the workers) after each case. Throws when `raw` holds no case, when
// `out` cannot be written, and (strict) at the first failing case; otherwise returns the
// summary after writing out/index.json, which lists the cases that succeeded and those that
// failed.
inline PreprocessSummary preprocess_dataset(
    const std::filesystem::path& raw, const std::filesystem::path& out,
    const PreprocessOptions& options,
    const std::function<void(const PreprocessEvent&)>& on_event = nullptr) {
  namespace fs = std::filesystem;
  REVOX_CHECK(options.threads >= 1, "preprocess: --threads must be >= 1, got ", options.threads);
  DiscoverOptions discover;
  discover.require_segmentation = options.require_segmentation;
  const std::vector<BratsCase> cases = discover_brats_cases(raw, discover);
  REVOX_CHECK(!cases.empty(), "preprocess: no BraTS case under '", raw.string(), "'");
  std::error_code ec;
  REVOX_CHECK(!fs::exists(out, ec) || fs::is_directory(out, ec), "preprocess: --out '",
              out.string(), "' exists and is not a directory");
  REVOX_CHECK(fs::weakly_canonical(raw, ec) != fs::weakly_canonical(out, ec),
              "preprocess: --out must not be the raw dataset folder '", raw.string(), "'");
  fs::create_directories(out / "cases", ec);
  REVOX_CHECK(!ec, "preprocess: cannot create '", (out / "cases").string(), "': ", ec.message());
  // An index that no longer describes the folder's contents must not survive a partial rerun.
  fs::remove(out / kCaseIndexName, ec);
  // Temporary files left by a writer that was killed (.<id>.safetensors.tmp.<pid>.<n>).
  for (const auto& entry : fs::directory_iterator(out / "cases")) {
    const std::string name = entry.path().filename().string();
    if (name.size() > 1 && name[0] == '.' && name.find(".tmp.") != std::string::npos) {
      fs::remove(entry.path(), ec);
    }
  }

  const std::string policy = io::to_string(options.nan_policy);
  std::vector<std::optional<CaseInfo>> results(cases.size());
  std::vector<std::string> errors(cases.size());
  std::atomic<std::size_t> next{0};
  std::atomic<bool> stop{false};
  std::mutex mutex;
  std::size_t done = 0;
  PreprocessSummary summary;
  std::exception_ptr strict_failure;

  auto work_on = [&](std::size_t i) {
    const BratsCase& c = cases[i];
    const auto start = std::chrono::steady_clock::now();
    PreprocessEvent event;
    event.id = c.id;
    try {
      const fs::path file = out / "cases" / (c.id + ".safetensors");
      const std::vector<SourceFile> sources = source_fingerprints(c);
      bool skip = false;
      std::error_code exists_error;  // one per worker: error codes are not shared
      if (fs::exists(file, exists_error)) {
        try {
          MappedCase existing = map_case_file(file, /*verify=*/true);
          skip = existing.info.sources == sources && existing.info.margin == options.margin &&
                 existing.info.nan_policy == policy && existing.info.id == c.id;
          if (skip) results[i] = existing.info;
        } catch (const Error&) {
          skip = false;  // damaged or foreign: rewrite it
        }
      }
      if (skip) {
        event.kind = PreprocessEvent::Kind::skipped;
      } else {
        LoadOptions load;
        load.nan_policy = options.nan_policy;
        LoadedCase loaded = load_brats_case(c, load);
        for (const auto& z : loaded.zeroed) {
          event.notes += (event.notes.empty() ? "" : "; ") + describe_zeroed(c.id, z);
        }
        std::error_code abs_ec;
        const auto folder = fs::absolute(c.folder, abs_ec).lexically_normal().string();
        PreparedCase prepared = prepare_case(std::move(loaded), options.margin, folder);
        prepared.info.sources = sources;
        prepared.info.nan_policy = policy;
        std::function<void(const fs::path&)> hook;
        if (options.before_rename) {
          hook = [&](const fs::path& tmp) { options.before_rename(c.id, tmp); };
        }
        write_case_file(file, prepared.info, *prepared.arrays, hook);
        results[i] = prepared.info;
        event.kind = PreprocessEvent::Kind::written;
      }
    } catch (const InternalError&) {
      throw;
    } catch (const std::exception& e) {
      event.kind = PreprocessEvent::Kind::failed;
      event.error = e.what();
      errors[i] = e.what();
    }
    event.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::lock_guard<std::mutex> lock(mutex);
    event.done = ++done;
    event.total = cases.size();
    switch (event.kind) {
      case PreprocessEvent::Kind::written: ++summary.written; break;
      case PreprocessEvent::Kind::skipped: ++summary.skipped; break;
      case PreprocessEvent::Kind::failed: ++summary.failed; break;
    }
    if (on_event) on_event(event);
    if (event.kind == PreprocessEvent::Kind::failed && options.strict && !strict_failure) {
      strict_failure = std::make_exception_ptr(
          Error("preprocess: stopped at the first failing case (--strict): " + event.error));
      stop = true;
    }
  };
  auto worker = [&] {
#ifdef _OPENMP
    omp_set_num_threads(1);  // one case per worker; the workers are the parallelism
#endif
    try {
      for (std::size_t i; !stop && (i = next++) < cases.size();) work_on(i);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex);
      if (!strict_failure) strict_failure = std::current_exception();
      stop = true;
    }
  };
  // Every worker is a thread of its own (its OpenMP setting stays its own).
  const int threads = static_cast<int>(std::min<std::size_t>(
      static_cast<std::size_t>(options.threads), cases.size()));
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back(worker);
  for (auto& t : pool) t.join();
  if (strict_failure) std::rethrow_exception(strict_failure);

  CaseIndex& index = summary.index;
  index.folder = out;
  index.source = fs::absolute(raw, ec).lexically_normal().string();
  index.margin = options.margin;
  index.nan_policy = policy;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    if (results[i]) {
      index.cases.push_back(*results[i]);
    } else {
      index.failed.push_back({cases[i].id, errors[i]});
    }
  }
  write_case_index(index);
  return summary;
}

}  // namespace revox::data
