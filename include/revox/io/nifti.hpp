// revox/io/nifti.hpp — reads NIfTI-1/NIfTI-2 volumes (.nii, .nii.gz) into float tensors and
// writes float maps and uint8 label maps as NIfTI-1, through nifti_clib (libnifti2).
// Needs the revox::nifti CMake target (nifti_clib + zlib); revox::revox alone lacks them.
//
// read_nifti(path, options = {}) returns one 3-D volume as a Tensor<float> of shape (1, 1, D = nz, H = ny,
// W = nx) (NIfTI's x is the fastest axis, so voxel (x, y, z) sits at x + nx * (y + ny * z)),
// with scl_slope/scl_inter applied when the slope is non-zero, plus the geometry of the header
// (pixdim, qform and sform). Datatypes: uint8, int8, int16, uint16, int32, float32, float64,
// either byte order.
//
// nifti_clib 3.0.1 trusts its input far too much: it opens a.nii.gz when asked for a.nii,
// accepts bad magic and dim[0] = 0, allocates from header dimensions before it checks the
// file size, loads a .gz whose trailer is cut, and silently turns NaN/Inf float voxels into 0.
// So revox reads files itself: it checks that the exact path is a regular file named .nii or
// .nii.gz, streams the bytes (through zlib for .gz), validates every header field it relies
// on as soon as the header has arrived, keeps only the data section (memory grows with the
// bytes that arrive, never with what the header claims), requires all the data the header
// promises and, for .gz, that the whole stream inflates to its end with a correct CRC and
// length. nifti_clib then reads the same header and must agree. Every problem throws
// revox::Error whose message names the file and the problem, e.g.
//   NIfTI file '/data/x.nii.gz': truncated data: header says 240x240x155 float32
//   (35712000 bytes from offset 352), the file has 1000000
// NaN or Inf voxels are an error naming their count and the first one (and "after scaling"
// when scl_slope/scl_inter turned a finite stored value into one), unless
// NiftiReadOptions::nan_policy is NanPolicy::zero: then they become 0 and
// NiftiVolume::non_finite_zeroed counts them.
//
// Before anything is allocated or inflated, the memory the header asks for (the data section,
// dims x bytes per voxel, plus the float32 volume it becomes) is checked against a limit:
// NiftiReadOptions::max_bytes if non-zero, else the environment variable
// REVOX_NIFTI_MAX_BYTES (bytes, or with a K/M/G/T suffix: powers of 1024), else a quarter of
// the memory available (MemAvailable in /proc/meminfo), at least 1 GiB and at most 8 GiB. A
// small .nii.gz that inflates to gigabytes is thus refused by name instead of exhausting
// memory; running out of memory anyway while reading throws revox::Error naming the file and
// the size asked for.
//
// Writing (write_nifti: float32, write_nifti_labels: uint8) goes through nifti_clib and
// produces single-file NIfTI-1 (its single-file NIfTI-2 writing is broken in 3.0.1),
// compressed when the name ends in .gz, with the given geometry. It is atomic: the file goes
// to a temporary file in the target's directory, is fsync'ed, read back with read_nifti and
// compared, and only then renamed over the target. nifti_image_write reports no status, so
// the read-back is the only proof that the write worked. A failed write leaves no temporary
// file and names the target; when it failed because the disk is full or the file size limit
// (RLIMIT_FSIZE, `ulimit -f`) was reached, the message says so. NIfTI-1 stores geometry as float32, so it reads back rounded to
// float, and it stores the quaternion (sform rows) only when qform_code (sform_code) > 0.
#pragma once

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <zlib.h>

#include <nifti2_io.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <limits>
#include <new>
#include <memory>
#include <sstream>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "revox/core/error.hpp"
#include "revox/core/tensor.hpp"

namespace revox::io {

// Where the voxels of a volume are in the world (mm), as a NIfTI header says.
struct NiftiGeometry {
  std::array<double, 3> spacing{1, 1, 1};  // pixdim[1..3] in mm
  int qform_code = 0, sform_code = 0;
  // Quaternion parameters and the sform rows as in the header, enough to write them back.
  double quatern_b = 0, quatern_c = 0, quatern_d = 0, qoffset_x = 0, qoffset_y = 0,
         qoffset_z = 0, qfac = 1;
  std::array<std::array<double, 4>, 3> srow{};  // srow_x, srow_y, srow_z

  // Voxel (i, j, k) -> world (x, y, z), by the NIfTI rule: the sform if sform_code > 0,
  // else the qform if qform_code > 0, else scaling by pixdim ("method 1").
  std::array<std::array<double, 4>, 4> affine() const {
    std::array<std::array<double, 4>, 4> m{};
    m[3] = {0, 0, 0, 1};
    if (sform_code > 0) {
      for (int r = 0; r < 3; ++r) m[r] = srow[r];
      return m;
    }
    if (qform_code > 0) {
      // nifti1.h's quaternion -> rotation, as nifti_quatern_to_dmat44 computes it.
      double b = quatern_b, c = quatern_c, d = quatern_d;
      double a = 1.0 - (b * b + c * c + d * d);
      if (a < 1e-7) {  // a 180-degree rotation: renormalise (b, c, d)
        const double norm = std::sqrt(b * b + c * c + d * d);
        a = 0;
        if (norm > 0) {
          b /= norm;
          c /= norm;
          d /= norm;
        }
      } else {
        a = std::sqrt(a);
      }
      const double xd = spacing[0] > 0 ? spacing[0] : 1.0;
      const double yd = spacing[1] > 0 ? spacing[1] : 1.0;
      const double zd = (spacing[2] > 0 ? spacing[2] : 1.0) * (qfac < 0 ? -1.0 : 1.0);
      const double rotation[3][3] = {
          {a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)},
          {2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)},
          {2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b}};
      const double offset[3] = {qoffset_x, qoffset_y, qoffset_z};
      for (int r = 0; r < 3; ++r) {
        m[r] = {rotation[r][0] * xd, rotation[r][1] * yd, rotation[r][2] * zd, offset[r]};
      }
      return m;
    }
    m[0] = {spacing[0], 0, 0, 0};
    m[1] = {0, spacing[1], 0, 0};
    m[2] = {0, 0, spacing[2], 0};
    return m;
  }

  // Spacing and affine agree within `tolerance` (mm): e.g. a case's modalities match.
  bool matches(const NiftiGeometry& other, double tolerance = 1e-3) const {
    for (int i = 0; i < 3; ++i) {
      if (!(std::abs(spacing[i] - other.spacing[i]) <= tolerance)) return false;
    }
    const auto a = affine();
    const auto b = other.affine();
    for (int r = 0; r < 4; ++r) {
      for (int c = 0; c < 4; ++c) {
        if (!(std::abs(a[r][c] - b[r][c]) <= tolerance)) return false;
      }
    }
    return true;
  }
};

// qform and sform both code 1 (scanner), identity rotation, origin 0, the given spacing.
inline NiftiGeometry default_geometry(std::array<double, 3> spacing = {1, 1, 1}) {
  NiftiGeometry geometry;
  geometry.spacing = spacing;
  geometry.qform_code = 1;
  geometry.sform_code = 1;
  geometry.srow = {{{spacing[0], 0, 0, 0}, {0, spacing[1], 0, 0}, {0, 0, spacing[2], 0}}};
  return geometry;
}

struct NiftiVolume {
  Tensor<float> data;  // shape (1, 1, D = nz, H = ny, W = nx): NIfTI's x is the fastest axis = W
  NiftiGeometry geometry;
  int datatype = 0;       // NIFTI_TYPE_* of the file
  int nifti_version = 1;  // 1 or 2
  // NaN/Inf voxels set to 0 under NanPolicy::zero (always 0 under NanPolicy::error).
  std::int64_t non_finite_zeroed = 0;
};

// What read_nifti does with NaN or Inf voxels (after scaling): reject the file (error, the
// default) or set them to 0 (zero, e.g. for the NaN background of resampled images).
enum class NanPolicy { error, zero };

inline const char* to_string(NanPolicy policy) {
  return policy == NanPolicy::zero ? "zero" : "error";
}

// "error" or "zero"; anything else throws naming the valid values.
inline NanPolicy nan_policy_from_string(const std::string& text) {
  if (text == "error") return NanPolicy::error;
  if (text == "zero") return NanPolicy::zero;
  throw Error(revox::detail::concat("unknown NaN policy '", text,
                                    "': expected \"error\" or \"zero\""));
}

struct NiftiReadOptions {
  // Most bytes a read may allocate for the voxels (the data section plus the float32
  // volume); 0: REVOX_NIFTI_MAX_BYTES if set, else default_nifti_max_bytes().
  std::uint64_t max_bytes = 0;
  NanPolicy nan_policy = NanPolicy::error;
  // Appended to the NaN/Inf error under NanPolicy::error; empty: a hint naming
  // NanPolicy::zero and revox-brats --nan-policy zero.
  std::string nan_hint;
};

// Memory the kernel says is available (MemAvailable, else free pages); 0 if unknown.
inline std::uint64_t available_memory_bytes() {
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  std::uint64_t value = 0;
  std::string unit;
  while (meminfo >> key >> value) {
    std::getline(meminfo, unit);
    if (key == "MemAvailable:") return value * 1024;  // the kernel reports kB
  }
  const long pages = ::sysconf(_SC_AVPHYS_PAGES);
  const long page_size = ::sysconf(_SC_PAGESIZE);
  if (pages > 0 && page_size > 0) {
    return static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page_size);
  }
  return 0;
}

// A quarter of the available memory, at least 1 GiB and at most 8 GiB (4 GiB if unknown).
// (A BraTS volume, 240x240x155 float32, needs 71 MB.)
inline std::uint64_t default_nifti_max_bytes() {
  constexpr std::uint64_t kGiB = std::uint64_t{1} << 30;
  const std::uint64_t available = available_memory_bytes();
  if (available == 0) return 4 * kGiB;
  return std::clamp(available / 4, kGiB, 8 * kGiB);
}

// The limit read_nifti applies with `options`, and where it comes from (for messages).
struct NiftiByteLimit {
  std::uint64_t bytes = 0;
  std::string source;
};

inline NiftiByteLimit nifti_max_bytes(const NiftiReadOptions& options = {}) {
  if (options.max_bytes > 0) return {options.max_bytes, "NiftiReadOptions::max_bytes"};
  const char* text = std::getenv("REVOX_NIFTI_MAX_BYTES");
  if (text != nullptr && *text != '\0') {
    const std::string value(text);
    std::size_t digits = 0;
    while (digits < value.size() && std::isdigit(static_cast<unsigned char>(value[digits]))) {
      ++digits;
    }
    int shift = -1;
    const std::string suffix = value.substr(digits);
    if (suffix.empty()) shift = 0;
    else if (suffix == "K" || suffix == "k") shift = 10;
    else if (suffix == "M" || suffix == "m") shift = 20;
    else if (suffix == "G" || suffix == "g") shift = 30;
    else if (suffix == "T" || suffix == "t") shift = 40;
    std::uint64_t number = 0;
    bool ok = digits > 0 && digits <= 15 && shift >= 0;
    if (ok) {
      number = std::stoull(value.substr(0, digits));
      ok = number > 0 && number <= (std::numeric_limits<std::uint64_t>::max() >> shift);
    }
    if (!ok) {
      throw Error(revox::detail::concat(
          "REVOX_NIFTI_MAX_BYTES='", value, "' is not a positive number of bytes (e.g. ",
          "8000000000, 512M or 8G: K, M, G, T are powers of 1024)"));
    }
    return {number << shift, "REVOX_NIFTI_MAX_BYTES"};
  }
  return {default_nifti_max_bytes(),
          "default: a quarter of the available memory, at least 1 GiB, at most 8 GiB"};
}

namespace nifti_detail {

// More voxels than this is taken as a corrupt header, before anything is allocated.
inline constexpr std::int64_t kMaxVoxels = std::int64_t{1} << 32;

template <class... Parts>
[[noreturn]] void fail(const std::filesystem::path& path, Parts&&... parts) {
  throw Error(revox::detail::concat("NIfTI file '", path.string(), "': ",
                                    std::forward<Parts>(parts)...));
}

template <class... Parts>
[[noreturn]] void fail_write(const std::filesystem::path& path, Parts&&... parts) {
  throw Error(revox::detail::concat("NIfTI: cannot write '", path.string(), "': ",
                                    std::forward<Parts>(parts)...));
}

struct DatatypeInfo {
  int code;
  const char* name;
  int bytes;
  bool supported;
};

inline constexpr DatatypeInfo kDatatypes[] = {
    {NIFTI_TYPE_UINT8, "uint8", 1, true},      {NIFTI_TYPE_INT8, "int8", 1, true},
    {NIFTI_TYPE_INT16, "int16", 2, true},      {NIFTI_TYPE_UINT16, "uint16", 2, true},
    {NIFTI_TYPE_INT32, "int32", 4, true},      {NIFTI_TYPE_FLOAT32, "float32", 4, true},
    {NIFTI_TYPE_FLOAT64, "float64", 8, true},  {DT_BINARY, "binary", 0, false},
    {NIFTI_TYPE_UINT32, "uint32", 4, false},   {NIFTI_TYPE_INT64, "int64", 8, false},
    {NIFTI_TYPE_UINT64, "uint64", 8, false},   {NIFTI_TYPE_FLOAT128, "float128", 16, false},
    {NIFTI_TYPE_COMPLEX64, "complex64", 8, false},
    {NIFTI_TYPE_COMPLEX128, "complex128", 16, false},
    {NIFTI_TYPE_COMPLEX256, "complex256", 32, false},
    {NIFTI_TYPE_RGB24, "rgb24", 3, false},     {NIFTI_TYPE_RGBA32, "rgba32", 4, false}};

inline const DatatypeInfo* find_datatype(int code) {
  for (const auto& info : kDatatypes) {
    if (info.code == code) return &info;
  }
  return nullptr;
}

inline bool ends_with_nocase(const std::string& text, const std::string& suffix) {
  if (text.size() < suffix.size()) return false;
  const auto tail = text.end() - static_cast<std::ptrdiff_t>(suffix.size());
  return std::equal(suffix.begin(), suffix.end(), tail,
                    [](char a, char b) {
                      return std::tolower(static_cast<unsigned char>(a)) ==
                             std::tolower(static_cast<unsigned char>(b));
                    });
}

// True for .nii.gz, false for .nii; anything else is not a file name revox reads or writes
// (nifti_clib would guess at other names, e.g. "a" -> "a.nii").
inline bool is_gzip_name(const std::filesystem::path& path) {
  return ends_with_nocase(path.filename().string(), ".nii.gz");
}
inline bool is_nifti_name(const std::filesystem::path& path) {
  const std::string name = path.filename().string();
  return (ends_with_nocase(name, ".nii") && name.size() > 4) ||
         (ends_with_nocase(name, ".nii.gz") && name.size() > 7);
}

// The header fields revox uses, in host byte order, as doubles/int64 for both versions.
struct RawHeader {
  int version = 1;
  bool swapped = false;
  std::int64_t dim[8] = {};
  int datatype = 0;
  double pixdim[8] = {};
  double vox_offset = 0;
  double scl_slope = 0, scl_inter = 0;
  int qform_code = 0, sform_code = 0;
  double quatern[3] = {}, qoffset[3] = {};
  double srow[3][4] = {};
};

template <class T>
T load(const std::uint8_t* bytes, std::size_t offset, bool swapped) {
  std::uint8_t raw[sizeof(T)];
  std::memcpy(raw, bytes + offset, sizeof(T));
  if (swapped) std::reverse(raw, raw + sizeof(T));
  T value;
  std::memcpy(&value, raw, sizeof(T));
  return value;
}

inline std::string printable(const std::uint8_t* bytes, std::size_t count) {
  std::ostringstream out;
  out << '"';
  for (std::size_t i = 0; i < count; ++i) {
    const unsigned c = bytes[i];
    if (c >= 32 && c < 127 && c != '"' && c != '\\') {
      out << static_cast<char>(c);
    } else {
      out << "\\x" << std::hex << std::setw(2) << std::setfill('0') << c << std::dec;
    }
  }
  out << '"';
  return out.str();
}

// Parses the first `size` bytes of a file (348 suffice for NIfTI-1, 540 for NIfTI-2).
inline RawHeader parse_header(const std::filesystem::path& path, const std::uint8_t* bytes,
                              std::size_t size) {
  if (size < 348) {
    fail(path, "truncated header: ", size, " bytes, a NIfTI header needs at least 348");
  }
  RawHeader h;
  const auto sizeof_hdr = load<std::int32_t>(bytes, 0, false);
  const auto sizeof_hdr_swapped = load<std::int32_t>(bytes, 0, true);
  if (sizeof_hdr == 348 || sizeof_hdr == 540) {
    h.version = sizeof_hdr == 348 ? 1 : 2;
  } else if (sizeof_hdr_swapped == 348 || sizeof_hdr_swapped == 540) {
    h.version = sizeof_hdr_swapped == 348 ? 1 : 2;
    h.swapped = true;
  } else {
    fail(path, "bad sizeof_hdr ", sizeof_hdr, " (expected 348 for NIfTI-1 or 540 for NIfTI-2)");
  }
  const bool s = h.swapped;
  if (h.version == 1) {
    static const std::uint8_t kMagic[4] = {'n', '+', '1', 0};
    if (std::memcmp(bytes + 344, kMagic, 4) != 0) {
      if (std::memcmp(bytes + 344, "ni1", 4) == 0) {
        fail(path, "magic \"ni1\" marks a .hdr/.img pair, which revox does not read; a .nii "
             "file has magic \"n+1\"");
      }
      fail(path, "bad magic ", printable(bytes + 344, 4), " (expected \"n+1\\x00\" for NIfTI-1)");
    }
    for (int i = 0; i < 8; ++i) h.dim[i] = load<std::int16_t>(bytes, 40 + 2 * i, s);
    h.datatype = load<std::int16_t>(bytes, 70, s);
    for (int i = 0; i < 8; ++i) h.pixdim[i] = load<float>(bytes, 76 + 4 * i, s);
    h.vox_offset = load<float>(bytes, 108, s);
    h.scl_slope = load<float>(bytes, 112, s);
    h.scl_inter = load<float>(bytes, 116, s);
    h.qform_code = load<std::int16_t>(bytes, 252, s);
    h.sform_code = load<std::int16_t>(bytes, 254, s);
    for (int i = 0; i < 3; ++i) h.quatern[i] = load<float>(bytes, 256 + 4 * i, s);
    for (int i = 0; i < 3; ++i) h.qoffset[i] = load<float>(bytes, 268 + 4 * i, s);
    for (int r = 0; r < 3; ++r) {
      for (int c = 0; c < 4; ++c) h.srow[r][c] = load<float>(bytes, 280 + 16 * r + 4 * c, s);
    }
    return h;
  }
  if (size < 540) {
    fail(path, "truncated header: ", size, " bytes, a NIfTI-2 header needs 540");
  }
  static const std::uint8_t kMagic2[8] = {'n', '+', '2', 0, '\r', '\n', 0x1a, '\n'};
  if (std::memcmp(bytes + 4, kMagic2, 8) != 0) {
    if (std::memcmp(bytes + 4, "ni2", 4) == 0) {
      fail(path, "magic \"ni2\" marks a .hdr/.img pair, which revox does not read; a .nii "
           "file has magic \"n+2\"");
    }
    fail(path, "bad magic ", printable(bytes + 4, 8),
         " (expected \"n+2\\x00\\r\\n\\x1a\\n\" for NIfTI-2)");
  }
  h.datatype = load<std::int16_t>(bytes, 12, s);
  for (int i = 0; i < 8; ++i) h.dim[i] = load<std::int64_t>(bytes, 16 + 8 * i, s);
  for (int i = 0; i < 8; ++i) h.pixdim[i] = load<double>(bytes, 104 + 8 * i, s);
  h.vox_offset = static_cast<double>(load<std::int64_t>(bytes, 168, s));
  h.scl_slope = load<double>(bytes, 176, s);
  h.scl_inter = load<double>(bytes, 184, s);
  h.qform_code = load<std::int32_t>(bytes, 344, s);
  h.sform_code = load<std::int32_t>(bytes, 348, s);
  for (int i = 0; i < 3; ++i) h.quatern[i] = load<double>(bytes, 352 + 8 * i, s);
  for (int i = 0; i < 3; ++i) h.qoffset[i] = load<double>(bytes, 376 + 8 * i, s);
  for (int r = 0; r < 3; ++r) {
    for (int c = 0; c < 4; ++c) h.srow[r][c] = load<double>(bytes, 400 + 32 * r + 8 * c, s);
  }
  return h;
}

// What a validated header promises.
struct Layout {
  std::int64_t nx = 0, ny = 0, nz = 0;
  std::int64_t nvox = 0;
  std::int64_t data_offset = 0;
  std::int64_t data_bytes = 0;
  const DatatypeInfo* datatype = nullptr;

  std::string describe() const {
    return revox::detail::concat(nx, "x", ny, "x", nz, " ", datatype->name, " (", data_bytes,
                                 " bytes from offset ", data_offset, ")");
  }
  // What reading allocates for the voxels: the data section and the float32 volume. At most
  // 2^32 voxels x (8 + 4) bytes, so no overflow.
  std::uint64_t memory_bytes() const {
    return static_cast<std::uint64_t>(data_bytes) +
           static_cast<std::uint64_t>(nvox) * sizeof(float);
  }
};

// Refuses a header that asks for more memory than `limit`, before anything is allocated.
inline void check_byte_limit(const std::filesystem::path& path, const Layout& layout,
                             const NiftiByteLimit& limit) {
  if (layout.memory_bytes() <= limit.bytes) return;
  fail(path, "header declares ", layout.nx, "x", layout.ny, "x", layout.nz, " ",
       layout.datatype->name, " = ", layout.data_bytes, " bytes of voxel data, ",
       layout.memory_bytes(), " bytes in memory with the float32 volume; that is more than ",
       "the limit of ", limit.bytes, " bytes (", limit.source, "). If the file is meant to be ",
       "this large, raise the limit with the environment variable REVOX_NIFTI_MAX_BYTES ",
       "(e.g. REVOX_NIFTI_MAX_BYTES=32G) or NiftiReadOptions::max_bytes");
}

inline Layout validate_header(const std::filesystem::path& path, const RawHeader& h) {
  Layout layout;
  const std::int64_t ndim = h.dim[0];
  if (ndim < 3 || ndim > 7) {
    fail(path, "dim[0] = ", ndim, " is out of range: one 3-D volume needs dim[0] from 3 to 7");
  }
  for (std::int64_t i = 1; i <= ndim; ++i) {
    if (h.dim[i] <= 0) {
      fail(path, "non-positive dimension dim[", i, "] = ", h.dim[i]);
    }
  }
  for (std::int64_t i = 4; i <= ndim; ++i) {
    if (h.dim[i] != 1) {
      std::ostringstream dims;
      for (std::int64_t j = 1; j <= ndim; ++j) dims << (j > 1 ? "x" : "") << h.dim[j];
      fail(path, "holds more than one volume (dims ", dims.str(), "; dim[", i, "] = ", h.dim[i],
           "), expected a single 3-D volume");
    }
  }
  layout.nx = h.dim[1];
  layout.ny = h.dim[2];
  layout.nz = h.dim[3];
  // Each extent fits 2^63 (int64); check the product against the cap without overflow.
  if (layout.nx > kMaxVoxels || layout.ny > kMaxVoxels / layout.nx ||
      layout.nz > kMaxVoxels / (layout.nx * layout.ny)) {
    fail(path, "absurd dimensions ", layout.nx, "x", layout.ny, "x", layout.nz,
         ": more than ", kMaxVoxels, " voxels (corrupt header?)");
  }
  layout.nvox = layout.nx * layout.ny * layout.nz;

  layout.datatype = find_datatype(h.datatype);
  if (layout.datatype == nullptr || !layout.datatype->supported) {
    fail(path, "unsupported datatype ", h.datatype,
         layout.datatype != nullptr ? revox::detail::concat(" (", layout.datatype->name, ")")
                                    : std::string(" (unknown code)"),
         "; revox reads uint8, int8, int16, uint16, int32, float32 and float64");
  }
  layout.data_bytes = layout.nvox * layout.datatype->bytes;

  for (int i = 1; i <= 3; ++i) {
    if (!std::isfinite(h.pixdim[i]) || h.pixdim[i] <= 0) {
      fail(path, "pixdim[", i, "] = ", h.pixdim[i], " must be finite and positive");
    }
  }
  if (!std::isfinite(h.scl_slope) || !std::isfinite(h.scl_inter)) {
    fail(path, "non-finite scaling: scl_slope = ", h.scl_slope, ", scl_inter = ", h.scl_inter);
  }
  const double min_offset = h.version == 1 ? 352 : 544;
  if (!std::isfinite(h.vox_offset) || h.vox_offset < min_offset ||
      h.vox_offset != std::floor(h.vox_offset) || h.vox_offset > 1e15) {
    fail(path, "bad vox_offset ", h.vox_offset, " (expected a whole number >= ", min_offset,
         ")");
  }
  layout.data_offset = static_cast<std::int64_t>(h.vox_offset);
  if (h.qform_code > 0) {
    const std::pair<const char*, double> parameters[] = {
        {"quatern_b", h.quatern[0]}, {"quatern_c", h.quatern[1]}, {"quatern_d", h.quatern[2]},
        {"qoffset_x", h.qoffset[0]}, {"qoffset_y", h.qoffset[1]}, {"qoffset_z", h.qoffset[2]},
        {"pixdim[0] (qfac)", h.pixdim[0]}};
    for (const auto& [name, v] : parameters) {
      if (!std::isfinite(v)) {
        fail(path, "non-finite qform parameter ", name, " = ", v, " (qform_code ", h.qform_code,
             ")");
      }
    }
  }
  if (h.sform_code > 0) {
    static const char* const kRows[3] = {"srow_x", "srow_y", "srow_z"};
    for (int r = 0; r < 3; ++r) {
      for (int c = 0; c < 4; ++c) {
        if (!std::isfinite(h.srow[r][c])) {
          fail(path, "non-finite sform entry ", kRows[r], "[", c, "] = ", h.srow[r][c],
               " (sform_code ", h.sform_code, ")");
        }
      }
    }
  }
  return layout;
}

inline NiftiGeometry geometry_of(const RawHeader& h) {
  NiftiGeometry g;
  g.spacing = {h.pixdim[1], h.pixdim[2], h.pixdim[3]};
  g.qform_code = h.qform_code;
  g.sform_code = h.sform_code;
  g.quatern_b = h.quatern[0];
  g.quatern_c = h.quatern[1];
  g.quatern_d = h.quatern[2];
  g.qoffset_x = h.qoffset[0];
  g.qoffset_y = h.qoffset[1];
  g.qoffset_z = h.qoffset[2];
  g.qfac = h.pixdim[0] < 0 ? -1.0 : 1.0;
  for (int r = 0; r < 3; ++r) {
    for (int c = 0; c < 4; ++c) g.srow[r][c] = h.srow[r][c];
  }
  return g;
}

// Collects a file's bytes as they stream in (from disk or from zlib): the first 540 go to the
// header, which is validated as soon as it is complete; then only the data section is kept.
// Memory grows with the bytes that actually arrive, never with what the header claims.
class StreamReader {
 public:
  StreamReader(const std::filesystem::path& path, NiftiByteLimit limit)
      : path_(path), limit_(std::move(limit)) {}

  void consume(const std::uint8_t* bytes, std::size_t size) {
    if (!parsed_) {
      const std::size_t take = std::min(size, kPrefixBytes - prefix_.size());
      prefix_.insert(prefix_.end(), bytes, bytes + take);
      bytes += take;
      size -= take;
      offset_ += take;
      if (prefix_.size() < kPrefixBytes) return;
      parse_prefix();
    }
    keep(bytes, size, offset_);
    offset_ += size;
  }

  // Call when the stream has ended; throws unless the header and all the data arrived.
  void finish() {
    if (!parsed_) parse_prefix();
    if (data_.size() < static_cast<std::size_t>(layout_.data_bytes)) {
      const std::uint64_t have = offset_ > static_cast<std::uint64_t>(layout_.data_offset)
                                     ? offset_ - static_cast<std::uint64_t>(layout_.data_offset)
                                     : 0;
      fail(path_, "truncated data: header says ", layout_.describe(), ", the file has ", have);
    }
  }

  std::uint64_t bytes_seen() const { return offset_; }
  const RawHeader& header() const { return header_; }
  const Layout& layout() const { return layout_; }
  bool parsed() const { return parsed_; }
  const std::vector<std::uint8_t>& data() const { return data_; }

 private:
  static constexpr std::size_t kPrefixBytes = 540;

  void parse_prefix() {
    header_ = parse_header(path_, prefix_.data(), prefix_.size());
    layout_ = validate_header(path_, header_);
    check_byte_limit(path_, layout_, limit_);
    parsed_ = true;
    data_.reserve(static_cast<std::size_t>(
        std::min<std::int64_t>(layout_.data_bytes, std::int64_t{64} << 20)));
    keep(prefix_.data(), prefix_.size(), 0);  // the data may begin inside the prefix
  }

  // Appends the part of [offset, offset + size) that lies in the data section.
  void keep(const std::uint8_t* bytes, std::size_t size, std::uint64_t offset) {
    const auto begin = static_cast<std::uint64_t>(layout_.data_offset);
    const auto end = begin + static_cast<std::uint64_t>(layout_.data_bytes);
    const std::uint64_t from = std::max(offset, begin), to = std::min(offset + size, end);
    if (from < to) data_.insert(data_.end(), bytes + (from - offset), bytes + (to - offset));
  }

  std::filesystem::path path_;
  NiftiByteLimit limit_;
  std::vector<std::uint8_t> prefix_;
  std::vector<std::uint8_t> data_;
  RawHeader header_;
  Layout layout_;
  bool parsed_ = false;
  std::uint64_t offset_ = 0;
};

inline std::ifstream open_for_reading(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open for reading (", std::strerror(errno), ")");
  return in;
}

inline void read_plain(const std::filesystem::path& path, StreamReader& reader) {
  std::error_code ec;
  const std::uint64_t size = std::filesystem::file_size(path, ec);
  if (ec) fail(path, "cannot get the file size (", ec.message(), ")");
  if (size == 0) fail(path, "file is empty (0 bytes)");
  auto in = open_for_reading(path);
  std::vector<std::uint8_t> buffer(1 << 16);
  bool first = true;
  for (;;) {
    in.read(reinterpret_cast<char*>(buffer.data()), static_cast<std::streamsize>(buffer.size()));
    const auto got = static_cast<std::size_t>(in.gcount());
    if (got == 0) {
      if (in.bad()) fail(path, "read error (", std::strerror(errno), ")");
      break;
    }
    if (first && got >= 2 && buffer[0] == 0x1f && buffer[1] == 0x8b) {
      fail(path, "the data is gzip-compressed, but the name does not end in .gz");
    }
    first = false;
    reader.consume(buffer.data(), got);
  }
  reader.finish();
}

// Inflates the whole gzip file (concatenated members allowed) into `reader`. Throws unless
// every member ends with a correct CRC and length trailer.
inline void read_gzip(const std::filesystem::path& path, StreamReader& reader) {
  auto in = open_for_reading(path);
  z_stream stream{};
  if (inflateInit2(&stream, 16 + MAX_WBITS) != Z_OK) fail(path, "zlib inflateInit2 failed");
  struct End {
    z_stream* s;
    ~End() { inflateEnd(s); }
  } end{&stream};

  std::vector<std::uint8_t> input(1 << 16), output(1 << 16);
  bool at_member_end = false;
  bool first_read = true;
  std::uint64_t file_bytes_read = 0;  // compressed bytes read from the file so far
  for (;;) {
    if (stream.avail_in == 0) {
      in.read(reinterpret_cast<char*>(input.data()), static_cast<std::streamsize>(input.size()));
      const auto got = static_cast<std::size_t>(in.gcount());
      if (got == 0) {
        if (in.bad()) fail(path, "read error (", std::strerror(errno), ")");
        break;
      }
      if (first_read && (got < 2 || input[0] != 0x1f || input[1] != 0x8b)) {
        fail(path, "not a gzip file: the name ends in .gz but the data does not start with the "
             "gzip signature 1f 8b");
      }
      first_read = false;
      file_bytes_read += got;
      stream.next_in = input.data();
      stream.avail_in = static_cast<uInt>(got);
    }
    if (at_member_end) {
      // More bytes after a member: they must be another gzip member (zlib would call
      // anything else, e.g. zero padding, an "incorrect header check").
      if (stream.next_in[0] != 0x1f || (stream.avail_in >= 2 && stream.next_in[1] != 0x8b)) {
        std::error_code ec;
        const auto file_size = std::filesystem::file_size(path, ec);
        const std::uint64_t at = file_bytes_read - stream.avail_in;
        fail(path, "data after the end of the compressed stream: ",
             ec ? std::string("bytes")
                : std::to_string(file_size - at) + (file_size - at == 1 ? " byte" : " bytes"),
             " from offset ", at, " are not another gzip member (the ",
             reader.bytes_seen(), " decompressed bytes before them are complete)");
      }
      inflateReset(&stream);
      at_member_end = false;
    }
    stream.next_out = output.data();
    stream.avail_out = static_cast<uInt>(output.size());
    const int status = inflate(&stream, Z_NO_FLUSH);
    reader.consume(output.data(), output.size() - stream.avail_out);
    if (status == Z_STREAM_END) {
      at_member_end = true;
    } else if (status == Z_DATA_ERROR || status == Z_NEED_DICT) {
      const std::string zlib_message = stream.msg != nullptr ? stream.msg : "data error";
      if (zlib_message == "incorrect data check") {
        fail(path, "the gzip CRC does not match the decompressed data: the file is corrupted ",
             "(zlib: incorrect data check, after ", reader.bytes_seen(), " decompressed bytes)");
      }
      if (zlib_message == "incorrect length check") {
        fail(path, "the gzip length trailer does not match the decompressed size: the file is ",
             "corrupted (zlib: incorrect length check, after ", reader.bytes_seen(),
             " decompressed bytes)");
      }
      fail(path, "corrupt gzip stream (zlib: ", zlib_message, ") after ", reader.bytes_seen(),
           " decompressed bytes");
    } else if (status == Z_MEM_ERROR) {
      fail(path, "zlib ran out of memory while inflating");
    } else if (status != Z_OK && status != Z_BUF_ERROR) {
      fail(path, "zlib inflate failed with status ", status);
    }
  }
  if (first_read) fail(path, "file is empty (0 bytes)");
  if (!at_member_end) {
    fail(path, "truncated gzip stream: the file ends before the end of the compressed data and "
         "its CRC/length trailer (", reader.bytes_seen(), " bytes decompressed)");
  }
  reader.finish();
}

// The exact path must be a regular .nii/.nii.gz file: nifti_clib would silently open
// a.nii.gz for a.nii (and the reverse), or a.nii for "a".
inline void check_readable_path(const std::filesystem::path& path) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(status)) fail(path, "file does not exist");
  if (!std::filesystem::is_regular_file(status)) fail(path, "not a regular file");
  if (!is_nifti_name(path)) {
    fail(path, "unsupported file name: expected a name ending in .nii or .nii.gz");
  }
}

struct NiftiImageDeleter {
  void operator()(nifti_image* image) const { nifti_image_free(image); }
};
using NiftiImagePtr = std::unique_ptr<nifti_image, NiftiImageDeleter>;

// nifti_clib's reading of the header must agree with revox's (it writes revox's files).
inline void cross_check_with_nifti_clib(const std::filesystem::path& path, const Layout& layout) {
  NiftiImagePtr image(nifti_image_read(path.c_str(), 0));
  if (!image) fail(path, "nifti_clib could not read the header (file changed while reading?)");
  if (image->nx != layout.nx || image->ny != layout.ny || image->nz != layout.nz ||
      image->nvox != layout.nvox || image->datatype != layout.datatype->code ||
      image->iname_offset != layout.data_offset) {
    fail(path, "nifti_clib reads the header differently (", image->nx, "x", image->ny, "x",
         image->nz, ", datatype ", image->datatype, ", offset ", image->iname_offset,
         ") than revox (", layout.describe(), ")");
  }
}

template <class Raw>
void convert(const std::uint8_t* bytes, std::int64_t count, bool swapped, double slope,
             double inter, float* out) {
  for (std::int64_t i = 0; i < count; ++i) {
    const auto offset = static_cast<std::size_t>(i) * sizeof(Raw);
    auto value = static_cast<double>(load<Raw>(bytes, offset, swapped));
    if (slope != 0) value = value * slope + inter;
    out[i] = static_cast<float>(value);
  }
}

}  // namespace nifti_detail

namespace nifti_detail {

// The stored value of voxel `index`, before scaling, as a double.
inline double raw_value(const std::uint8_t* raw, int datatype, std::int64_t index, bool swapped) {
  const auto at = [&](std::size_t bytes) { return static_cast<std::size_t>(index) * bytes; };
  switch (datatype) {
    case NIFTI_TYPE_UINT8: return load<std::uint8_t>(raw, at(1), swapped);
    case NIFTI_TYPE_INT8: return load<std::int8_t>(raw, at(1), swapped);
    case NIFTI_TYPE_INT16: return load<std::int16_t>(raw, at(2), swapped);
    case NIFTI_TYPE_UINT16: return load<std::uint16_t>(raw, at(2), swapped);
    case NIFTI_TYPE_INT32: return load<std::int32_t>(raw, at(4), swapped);
    case NIFTI_TYPE_FLOAT32: return load<float>(raw, at(4), swapped);
    case NIFTI_TYPE_FLOAT64: return load<double>(raw, at(8), swapped);
    default: REVOX_ASSERT(false); return 0;
  }
}

// The header passed the byte limit, yet memory ran out: say so, naming the file and the size.
[[noreturn]] inline void fail_out_of_memory(const std::filesystem::path& path,
                                            const StreamReader& reader, const char* what) {
  if (!reader.parsed()) fail(path, "out of memory while reading the header (", what, ")");
  fail(path, "out of memory reading ", reader.layout().describe(), ": it needs ",
       reader.layout().memory_bytes(), " bytes with the float32 volume (", what, ")");
}

inline NiftiVolume read_nifti_impl(const std::filesystem::path& path,
                                   const NiftiReadOptions& options, const StreamReader& reader) {
  const RawHeader& header = reader.header();
  const Layout& layout = reader.layout();
  cross_check_with_nifti_clib(path, layout);

  NiftiVolume volume;
  volume.geometry = geometry_of(header);
  volume.datatype = layout.datatype->code;
  volume.nifti_version = header.version;
  volume.data = Tensor<float>(Shape5{1, 1, layout.nz, layout.ny, layout.nx});
  float* out = volume.data.data();
  const std::uint8_t* raw = reader.data().data();
  const std::int64_t n = layout.nvox;
  const bool s = header.swapped;
  const double slope = header.scl_slope, inter = header.scl_inter;
  switch (layout.datatype->code) {
    case NIFTI_TYPE_UINT8: convert<std::uint8_t>(raw, n, s, slope, inter, out); break;
    case NIFTI_TYPE_INT8: convert<std::int8_t>(raw, n, s, slope, inter, out); break;
    case NIFTI_TYPE_INT16: convert<std::int16_t>(raw, n, s, slope, inter, out); break;
    case NIFTI_TYPE_UINT16: convert<std::uint16_t>(raw, n, s, slope, inter, out); break;
    case NIFTI_TYPE_INT32: convert<std::int32_t>(raw, n, s, slope, inter, out); break;
    case NIFTI_TYPE_FLOAT32: convert<float>(raw, n, s, slope, inter, out); break;
    case NIFTI_TYPE_FLOAT64: convert<double>(raw, n, s, slope, inter, out); break;
    default: REVOX_ASSERT(false);
  }

  std::int64_t bad = 0, first_bad = -1;
  for (std::int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(out[i])) {
      if (bad++ == 0) first_bad = i;
      if (options.nan_policy == NanPolicy::zero) out[i] = 0.0f;
    }
  }
  if (bad > 0 && options.nan_policy == NanPolicy::error) {
    const std::int64_t x = first_bad % layout.nx, y = (first_bad / layout.nx) % layout.ny,
                       z = first_bad / (layout.nx * layout.ny);
    // "after scaling" only when scaling changes values and made this finite stored value
    // non-finite (a stored NaN is NaN with or without scaling).
    const bool scaling_applies = slope != 0 && !(slope == 1 && inter == 0);
    const bool by_scaling =
        scaling_applies && std::isfinite(raw_value(raw, layout.datatype->code, first_bad, s));
    const std::string hint =
        options.nan_hint.empty()
            ? std::string("; to read such voxels as 0, choose the NaN policy \"zero\" "
                          "(revox-brats --nan-policy zero, or NiftiReadOptions::nan_policy = "
                          "NanPolicy::zero)")
            : options.nan_hint;
    fail(path, bad, " NaN or Inf voxel", bad == 1 ? "" : "s", by_scaling ? " (after scaling)" : "",
         "; the first at (x, y, z) = (", x, ", ", y, ", ", z, ")", hint);
  }
  volume.non_finite_zeroed = bad;
  return volume;
}

}  // namespace nifti_detail

// Reads exactly one 3-D volume (dim[4..7] == 1 allowed); throws revox::Error naming the path.
inline NiftiVolume read_nifti(const std::filesystem::path& path,
                              const NiftiReadOptions& options = {}) {
  namespace d = nifti_detail;
  d::check_readable_path(path);
  // revox reads the voxels itself: besides the pitfalls above, nifti_clib 3.0.1 silently
  // replaces NaN and Inf float voxels by 0, hiding corrupt data.
  d::StreamReader reader(path, nifti_max_bytes(options));
  try {
    if (d::is_gzip_name(path)) {
      d::read_gzip(path, reader);
    } else {
      d::read_plain(path, reader);
    }
    return d::read_nifti_impl(path, options, reader);
  } catch (const std::bad_alloc& e) {
    d::fail_out_of_memory(path, reader, e.what());
  } catch (const InternalError&) {
    throw;
  } catch (const Error& e) {
    // The tensor allocator's own out-of-memory error does not name the file.
    if (std::strstr(e.what(), "out of memory allocating") != nullptr &&
        std::strstr(e.what(), "NIfTI file '") == nullptr) {
      d::fail_out_of_memory(path, reader, e.what());
    }
    throw;
  }
}

namespace nifti_detail {

// The geometry as a NIfTI-1 file stores it: float32 fields, and the quaternion (sform rows)
// written only when qform_code (sform_code) is positive.
inline NiftiGeometry as_stored_in_nifti1(const NiftiGeometry& g) {
  // volatile: GCC 12.2's SLP vectorizer at -O2 folds this double -> float -> double round
  // trip away when it vectorizes the assignments below (reproduced on Debian 12).
  auto f = [](double v) {
    volatile float rounded = static_cast<float>(v);
    return static_cast<double>(rounded);
  };
  NiftiGeometry s;
  for (int i = 0; i < 3; ++i) s.spacing[i] = f(g.spacing[i]);
  s.qform_code = g.qform_code;
  s.sform_code = g.sform_code;
  if (g.qform_code > 0) {
    s.quatern_b = f(g.quatern_b);
    s.quatern_c = f(g.quatern_c);
    s.quatern_d = f(g.quatern_d);
    s.qoffset_x = f(g.qoffset_x);
    s.qoffset_y = f(g.qoffset_y);
    s.qoffset_z = f(g.qoffset_z);
    s.qfac = g.qfac < 0 ? -1.0 : 1.0;
  }
  if (g.sform_code > 0) {
    for (int r = 0; r < 3; ++r) {
      for (int c = 0; c < 4; ++c) s.srow[r][c] = f(g.srow[r][c]);
    }
  }
  return s;
}

inline bool same_geometry(const NiftiGeometry& a, const NiftiGeometry& b) {
  return a.spacing == b.spacing && a.qform_code == b.qform_code &&
         a.sform_code == b.sform_code && a.quatern_b == b.quatern_b &&
         a.quatern_c == b.quatern_c && a.quatern_d == b.quatern_d &&
         a.qoffset_x == b.qoffset_x && a.qoffset_y == b.qoffset_y &&
         a.qoffset_z == b.qoffset_z && a.qfac == b.qfac && a.srow == b.srow;
}

inline std::string describe(const NiftiGeometry& g) {
  std::ostringstream out;
  out << std::setprecision(9) << "spacing " << g.spacing[0] << "," << g.spacing[1] << ","
      << g.spacing[2] << " qform_code " << g.qform_code << " quatern " << g.quatern_b << ","
      << g.quatern_c << "," << g.quatern_d << " qoffset " << g.qoffset_x << "," << g.qoffset_y
      << "," << g.qoffset_z << " qfac " << g.qfac << " sform_code " << g.sform_code << " srow";
  for (const auto& row : g.srow) {
    for (double v : row) out << " " << v;
  }
  return out.str();
}

// Removes the temporary file unless the write committed it.
class TempNifti {
 public:
  explicit TempNifti(const std::filesystem::path& target) {
    const auto directory =
        target.parent_path().empty() ? std::filesystem::path(".") : target.parent_path();
    static std::atomic<unsigned> counter{0};
    // The name keeps the target's extension: nifti_clib compresses by name.
    for (int attempt = 0; attempt < 100; ++attempt) {
      path_ = directory / (".tmp." + std::to_string(static_cast<long>(::getpid())) + "." +
                           std::to_string(counter.fetch_add(1)) + "." +
                           target.filename().string());
      const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
      if (fd >= 0) {
        ::close(fd);
        return;
      }
      if (errno != EEXIST) break;
    }
    const int error = errno;
    path_.clear();
    fail_write(target, "cannot create a temporary file in '", directory.string(), "' (",
               std::strerror(error), ")");
  }
  TempNifti(const TempNifti&) = delete;
  TempNifti& operator=(const TempNifti&) = delete;
  ~TempNifti() {
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  const std::filesystem::path& path() const { return path_; }
  void release() { path_.clear(); }

 private:
  std::filesystem::path path_;
};

inline void check_write_geometry(const std::filesystem::path& path, const NiftiGeometry& g) {
  for (int i = 0; i < 3; ++i) {
    if (!std::isfinite(g.spacing[i]) || g.spacing[i] <= 0 ||
        !std::isfinite(static_cast<float>(g.spacing[i]))) {
      fail_write(path, "spacing[", i, "] = ", g.spacing[i], " must be finite and positive");
    }
  }
  auto code_ok = [](int code) { return code >= 0 && code <= 32767; };
  if (!code_ok(g.qform_code) || !code_ok(g.sform_code)) {
    fail_write(path, "qform_code ", g.qform_code, " / sform_code ", g.sform_code,
               " out of range 0..32767");
  }
  std::vector<double> values = {g.quatern_b, g.quatern_c, g.quatern_d, g.qoffset_x,
                                g.qoffset_y, g.qoffset_z, g.qfac};
  for (const auto& row : g.srow) values.insert(values.end(), row.begin(), row.end());
  for (double v : values) {
    if (!std::isfinite(static_cast<float>(v))) {
      fail_write(path, "non-finite (in float32) qform or sform parameter ", v);
    }
  }
}

// nifti_image_write reports no status: when a written file does not read back, says whether
// the file size limit or a full disk is the likely cause (empty when neither is).
inline std::string full_disk_hint(const std::filesystem::path& temp) {
  struct stat st {};
  struct rlimit limit {};
  if (::stat(temp.c_str(), &st) == 0 && ::getrlimit(RLIMIT_FSIZE, &limit) == 0 &&
      limit.rlim_cur != RLIM_INFINITY &&
      static_cast<unsigned long long>(st.st_size) >=
          static_cast<unsigned long long>(limit.rlim_cur)) {
    return revox::detail::concat(" (file size limit reached: RLIMIT_FSIZE, `ulimit -f`, is ",
                                 static_cast<unsigned long long>(limit.rlim_cur),
                                 " bytes and the file stopped there)");
  }
  struct statvfs vfs {};
  const auto directory =
      temp.parent_path().empty() ? std::filesystem::path(".") : temp.parent_path();
  if (::statvfs(directory.c_str(), &vfs) == 0 &&
      static_cast<unsigned long long>(vfs.f_bavail) * vfs.f_frsize < (1ull << 20)) {
    return revox::detail::concat(" (no space left on the device: ",
                                 static_cast<unsigned long long>(vfs.f_bavail) * vfs.f_frsize,
                                 " bytes free in '", directory.string(), "')");
  }
  return std::string();
}

// Writes `data` (nx*ny*nz elements of `datatype`) as single-file NIfTI-1, atomically;
// `check` compares the re-read volume with what was meant and returns "" when it matches.
template <class Check>
void write_atomic(const std::filesystem::path& path, int datatype, const void* data,
                  const Shape5& shape, const NiftiGeometry& geometry, Check&& check) {
  if (!is_nifti_name(path)) {
    fail_write(path, "unsupported file name: expected a name ending in .nii or .nii.gz");
  }
  if (shape.n != 1 || shape.c != 1 || shape.d <= 0 || shape.h <= 0 || shape.w <= 0) {
    fail_write(path, "expected a volume of shape (1, 1, D, H, W) with positive D, H, W, got ",
               shape);
  }
  if (shape.d > 32767 || shape.h > 32767 || shape.w > 32767) {
    fail_write(path, "NIfTI-1 holds at most 32767 voxels per axis, got ", shape);
  }
  check_write_geometry(path, geometry);

  TempNifti temp(path);
  const std::int64_t dims[8] = {3, shape.w, shape.h, shape.d, 1, 1, 1, 1};
  NiftiImagePtr image(nifti_make_new_nim(dims, datatype, 0));
  if (!image) fail_write(path, "nifti_make_new_nim failed");
  image->nifti_type = NIFTI_FTYPE_NIFTI1_1;
  // nifti_make_new_nim leaves dim[4..7] at 0; other tools expect 1 for unused dimensions.
  for (int i = 4; i <= 7; ++i) image->dim[i] = 1;
  image->nt = image->nu = image->nv = image->nw = 1;
  image->dx = image->pixdim[1] = geometry.spacing[0];
  image->dy = image->pixdim[2] = geometry.spacing[1];
  image->dz = image->pixdim[3] = geometry.spacing[2];
  image->xyz_units = NIFTI_UNITS_MM;
  image->scl_slope = 0;
  image->scl_inter = 0;
  image->qform_code = geometry.qform_code;
  image->sform_code = geometry.sform_code;
  image->quatern_b = geometry.quatern_b;
  image->quatern_c = geometry.quatern_c;
  image->quatern_d = geometry.quatern_d;
  image->qoffset_x = geometry.qoffset_x;
  image->qoffset_y = geometry.qoffset_y;
  image->qoffset_z = geometry.qoffset_z;
  image->qfac = geometry.qfac < 0 ? -1.0 : 1.0;
  image->qto_xyz = nifti_quatern_to_dmat44(image->quatern_b, image->quatern_c,
                                           image->quatern_d, image->qoffset_x,
                                           image->qoffset_y, image->qoffset_z, image->dx,
                                           image->dy, image->dz, image->qfac);
  for (int r = 0; r < 4; ++r) {
    for (int c = 0; c < 4; ++c) {
      image->sto_xyz.m[r][c] = r < 3 ? geometry.srow[r][c] : (c == 3 ? 1.0 : 0.0);
    }
  }
  if (nifti_set_filenames(image.get(), temp.path().c_str(), 0, 1) != 0 ||
      image->fname == nullptr || temp.path() != std::filesystem::path(image->fname)) {
    fail_write(path, "nifti_clib did not accept the temporary name '", temp.path().string(), "'");
  }
  // The library only reads the voxels; it never frees data it did not allocate here.
  image->data = const_cast<void*>(data);
  nifti_image_write(image.get());
  image->data = nullptr;
  image.reset();

  const int fd = ::open(temp.path().c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 || ::fsync(fd) != 0) {
    const int error = errno;
    if (fd >= 0) ::close(fd);
    fail_write(path, "fsync of '", temp.path().string(), "' failed (", std::strerror(error), ")");
  }
  ::close(fd);

  std::string problem;
  try {
    NiftiVolume written = read_nifti(temp.path());
    if (written.nifti_version != 1 || written.datatype != datatype) {
      problem = revox::detail::concat("it reads back as NIfTI-", written.nifti_version,
                                      " datatype ", written.datatype);
    } else if (written.data.shape() != shape) {
      problem = revox::detail::concat("it reads back with shape ", written.data.shape());
    } else if (!same_geometry(written.geometry, as_stored_in_nifti1(geometry))) {
      problem = "its geometry reads back differently (wrote " +
                describe(as_stored_in_nifti1(geometry)) + ", read " +
                describe(written.geometry) + ")";
    } else {
      problem = check(written.data);
    }
  } catch (const Error& e) {
    problem = e.what();
  }
  if (!problem.empty()) {
    fail_write(path, "verification of '", temp.path().string(), "' failed: ", problem,
               full_disk_hint(temp.path()));
  }
  if (std::rename(temp.path().c_str(), path.c_str()) != 0) {
    fail_write(path, "renaming '", temp.path().string(), "' over it failed (",
               std::strerror(errno), ")");
  }
  temp.release();
  // Make the rename itself durable; a directory that cannot be synced is not an error.
  const auto directory =
      path.parent_path().empty() ? std::filesystem::path(".") : path.parent_path();
  const int dir_fd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
}

}  // namespace nifti_detail

// Writes a float32 map (shape (1, 1, D, H, W)) with `geometry`; .nii or .nii.gz by name.
// Every voxel must be finite.
inline void write_nifti(const std::filesystem::path& path, const Tensor<float>& volume,
                        const NiftiGeometry& geometry) {
  namespace d = nifti_detail;
  std::int64_t bad = 0;
  for (std::int64_t i = 0; i < volume.numel(); ++i) bad += std::isfinite(volume[i]) ? 0 : 1;
  if (bad > 0) d::fail_write(path, bad, " NaN or Inf voxel(s) in the volume");
  d::write_atomic(path, NIFTI_TYPE_FLOAT32, volume.data(), volume.shape(), geometry,
                  [&](const Tensor<float>& written) -> std::string {
                    return std::equal(volume.data(), volume.data() + volume.numel(),
                                      written.data())
                               ? std::string()
                               : std::string("its voxels read back differently");
                  });
}

// Writes a uint8 label map (shape (1, 1, D, H, W)) with `geometry`; .nii or .nii.gz by name.
inline void write_nifti_labels(const std::filesystem::path& path,
                               const Tensor<std::uint8_t>& labels,
                               const NiftiGeometry& geometry) {
  nifti_detail::write_atomic(
      path, NIFTI_TYPE_UINT8, labels.data(), labels.shape(), geometry,
      [&](const Tensor<float>& written) -> std::string {
        for (std::int64_t i = 0; i < labels.numel(); ++i) {
          if (written[i] != static_cast<float>(labels[i])) {
            return "its labels read back differently";
          }
        }
        return std::string();
      });
}

}  // namespace revox::io
