// revox/io/safetensors.hpp — reads and writes safetensors files (the checkpoint format of
// Hugging Face's `safetensors`, read by PyTorch, JAX and friends).
//
// Format: an 8-byte little-endian u64 N, N bytes of UTF-8 JSON, then the data section:
//   {"name": {"dtype": "F64", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"key": "value", ...}}          (metadata optional, strings only)
// Offsets are relative to the start of the data section; tensors are row-major and
// little-endian, and together cover the data section exactly, without gaps or overlaps.
//
// Reading validates everything before trusting it (header length, nesting depth (at most
// 64 levels), JSON, every field, byte counts, offsets, coverage) and throws revox::Error
// whose message names the file and the problem. Tensors come back as raw bytes plus dtype and shape; values<U>() converts any
// supported dtype (F64, F32, F16, BF16, signed and unsigned integers, BOOL) to U.
//
// Writing is atomic: the file is written to a temporary file in the target's directory,
// flushed to disk (fsync), read back and verified, and only then renamed over the target.
// A failed write leaves no temporary file behind and never a half-written target; an
// existing target is replaced only by a complete, verified file. The header is padded with
// spaces to a multiple of 8 bytes, and the tensors are laid out by decreasing element size,
// so every tensor's data is aligned to its element size in the file (as the reference
// implementation does). Atomic replacement uses POSIX (open/fsync/rename). A full disk or a
// file size limit (RLIMIT_FSIZE, `ulimit -f`; with SIGXFSZ ignored, as revox-brats does) is
// reported as "no space left on the device" / "file size limit reached", naming the target.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <functional>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "revox/core/error.hpp"

namespace revox::io {

enum class Dtype { F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8, BOOL };

namespace detail {

struct DtypeInfo {
  Dtype dtype;
  const char* name;
  std::size_t size;
};

inline constexpr DtypeInfo kDtypes[] = {
    {Dtype::F64, "F64", 8}, {Dtype::F32, "F32", 4},  {Dtype::F16, "F16", 2},
    {Dtype::BF16, "BF16", 2}, {Dtype::I64, "I64", 8}, {Dtype::I32, "I32", 4},
    {Dtype::I16, "I16", 2}, {Dtype::I8, "I8", 1},    {Dtype::U64, "U64", 8},
    {Dtype::U32, "U32", 4}, {Dtype::U16, "U16", 2},  {Dtype::U8, "U8", 1},
    {Dtype::BOOL, "BOOL", 1}};

inline const DtypeInfo& dtype_info(Dtype dtype) {
  for (const auto& info : kDtypes) {
    if (info.dtype == dtype) return info;
  }
  REVOX_ASSERT(false);
  return kDtypes[0];
}

// A header larger than this is treated as corrupt rather than allocated.
inline constexpr std::uint64_t kMaxHeaderBytes = 100ull * 1000 * 1000;
// A valid header nests 3 levels ({name: {"shape": [...]}}). Deeper nesting is rejected
// before parsing: nlohmann's dump() (used in error messages) recurses once per level, so a
// header of 200000 '[' overflowed the stack (found by fuzz/fuzz_safetensors.cpp).
inline constexpr int kMaxHeaderDepth = 64;

template <class... Parts>
[[noreturn]] void fail(const std::filesystem::path& path, Parts&&... parts) {
  throw Error(revox::detail::concat("safetensors file '", path.string(), "': ",
                                    std::forward<Parts>(parts)...));
}

inline std::uint64_t load_le(const std::uint8_t* bytes, std::size_t size) {
  std::uint64_t value = 0;
  for (std::size_t i = 0; i < size; ++i) value |= std::uint64_t{bytes[i]} << (8 * i);
  return value;
}

inline void store_le(std::uint64_t value, std::size_t size, std::uint8_t* bytes) {
  for (std::size_t i = 0; i < size; ++i) bytes[i] = static_cast<std::uint8_t>(value >> (8 * i));
}

inline float half_to_float(std::uint16_t bits) {
  const std::uint32_t sign = (std::uint32_t{bits} & 0x8000u) << 16;
  const std::uint32_t exponent = (bits >> 10) & 0x1fu;
  std::uint32_t mantissa = bits & 0x3ffu;
  std::uint32_t out = 0;
  if (exponent == 0x1fu) {  // inf / NaN
    out = sign | 0x7f800000u | (mantissa << 13);
  } else if (exponent != 0) {  // normal
    out = sign | ((exponent + 112u) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {  // signed zero
    out = sign;
  } else {  // subnormal: renormalise
    std::uint32_t shift = 0;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      ++shift;
    }
    out = sign | ((113u - shift) << 23) | ((mantissa & 0x3ffu) << 13);
  }
  float value;
  std::memcpy(&value, &out, sizeof value);
  return value;
}

template <class T>
constexpr Dtype dtype_of() {
  if constexpr (std::is_same_v<T, double>) return Dtype::F64;
  else if constexpr (std::is_same_v<T, float>) return Dtype::F32;
  else if constexpr (std::is_same_v<T, bool>) return Dtype::BOOL;
  else if constexpr (std::is_same_v<T, std::int64_t>) return Dtype::I64;
  else if constexpr (std::is_same_v<T, std::int32_t>) return Dtype::I32;
  else if constexpr (std::is_same_v<T, std::int16_t>) return Dtype::I16;
  else if constexpr (std::is_same_v<T, std::int8_t>) return Dtype::I8;
  else if constexpr (std::is_same_v<T, std::uint64_t>) return Dtype::U64;
  else if constexpr (std::is_same_v<T, std::uint32_t>) return Dtype::U32;
  else if constexpr (std::is_same_v<T, std::uint16_t>) return Dtype::U16;
  else if constexpr (std::is_same_v<T, std::uint8_t>) return Dtype::U8;
  else static_assert(sizeof(T) == 0, "safetensors: no dtype for this element type");
}

}  // namespace detail

inline const char* dtype_name(Dtype dtype) { return detail::dtype_info(dtype).name; }
inline std::size_t dtype_size(Dtype dtype) { return detail::dtype_info(dtype).size; }
// False when `name` is not a dtype revox reads.
inline bool parse_dtype(const std::string& name, Dtype& dtype) {
  for (const auto& info : detail::kDtypes) {
    if (name == info.name) {
      dtype = info.dtype;
      return true;
    }
  }
  return false;
}

// One tensor held in host memory: raw little-endian, row-major bytes.
struct SafeTensor {
  Dtype dtype = Dtype::F64;
  std::vector<std::int64_t> shape;  // empty: a scalar
  std::vector<std::uint8_t> bytes;

  std::int64_t numel() const {
    std::int64_t count = 1;
    for (std::int64_t extent : shape) count *= extent;
    return count;
  }

  // Every element converted to U (F16 and BF16 through float).
  template <class U>
  std::vector<U> values() const {
    static_assert(std::is_arithmetic_v<U>, "SafeTensor::values: U must be arithmetic");
    const std::size_t size = dtype_size(dtype);
    REVOX_CHECK(bytes.size() == static_cast<std::size_t>(numel()) * size,
                "SafeTensor::values: ", bytes.size(), " bytes do not hold ", numel(), " ",
                dtype_name(dtype), " elements");
    std::vector<U> out(bytes.size() / size);
    auto convert = [&](auto decode) {
      for (std::size_t i = 0; i < out.size(); ++i) {
        out[i] = static_cast<U>(decode(detail::load_le(bytes.data() + i * size, size)));
      }
    };
    switch (dtype) {
      case Dtype::F64:
        convert([](std::uint64_t b) { double v; std::memcpy(&v, &b, 8); return v; });
        break;
      case Dtype::F32:
        convert([](std::uint64_t b) {
          const auto b32 = static_cast<std::uint32_t>(b);
          float v;
          std::memcpy(&v, &b32, 4);
          return v;
        });
        break;
      case Dtype::F16:
        convert([](std::uint64_t b) { return detail::half_to_float(static_cast<std::uint16_t>(b)); });
        break;
      case Dtype::BF16:
        convert([](std::uint64_t b) {
          const auto b32 = static_cast<std::uint32_t>(b) << 16;
          float v;
          std::memcpy(&v, &b32, 4);
          return v;
        });
        break;
      case Dtype::I64: convert([](std::uint64_t b) { return static_cast<std::int64_t>(b); }); break;
      case Dtype::I32:
        convert([](std::uint64_t b) { return static_cast<std::int32_t>(static_cast<std::uint32_t>(b)); });
        break;
      case Dtype::I16:
        convert([](std::uint64_t b) { return static_cast<std::int16_t>(static_cast<std::uint16_t>(b)); });
        break;
      case Dtype::I8:
        convert([](std::uint64_t b) { return static_cast<std::int8_t>(static_cast<std::uint8_t>(b)); });
        break;
      case Dtype::U64: convert([](std::uint64_t b) { return b; }); break;
      case Dtype::U32: convert([](std::uint64_t b) { return static_cast<std::uint32_t>(b); }); break;
      case Dtype::U16: convert([](std::uint64_t b) { return static_cast<std::uint16_t>(b); }); break;
      case Dtype::U8: convert([](std::uint64_t b) { return static_cast<std::uint8_t>(b); }); break;
      case Dtype::BOOL: convert([](std::uint64_t b) { return b != 0 ? 1 : 0; }); break;
    }
    return out;
  }
  std::vector<double> to_double() const { return values<double>(); }
  std::vector<float> to_float() const { return values<float>(); }
};

// A tensor of dtype matching T (double -> F64, float -> F32, std::int64_t -> I64, ...)
// holding `values`, whose count must be the product of `shape`.
template <class T>
SafeTensor make_safetensor(std::vector<std::int64_t> shape, const std::vector<T>& values) {
  SafeTensor tensor;
  tensor.dtype = detail::dtype_of<T>();
  tensor.shape = std::move(shape);
  for (std::int64_t extent : tensor.shape) {
    REVOX_CHECK(extent >= 0, "make_safetensor: negative extent ", extent, " in the shape");
  }
  REVOX_CHECK(static_cast<std::size_t>(tensor.numel()) == values.size(), "make_safetensor: ",
              values.size(), " values do not fill a shape of ", tensor.numel(), " elements");
  const std::size_t size = sizeof(T);
  tensor.bytes.resize(values.size() * size);
  for (std::size_t i = 0; i < values.size(); ++i) {
    std::uint64_t bits = 0;
    if constexpr (std::is_same_v<T, bool>) {
      bits = values[i] ? 1 : 0;
    } else if constexpr (std::is_floating_point_v<T>) {
      std::conditional_t<sizeof(T) == 8, std::uint64_t, std::uint32_t> raw;
      static_assert(sizeof raw == sizeof(T), "IEEE float or double expected");
      std::memcpy(&raw, &values[i], sizeof raw);
      bits = raw;
    } else {
      bits = static_cast<std::uint64_t>(values[i]);
    }
    detail::store_le(bits, size, tensor.bytes.data() + i * size);
  }
  return tensor;
}

// Where one tensor lives in a file, as its header says.
struct SafeTensorInfo {
  Dtype dtype = Dtype::F64;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0;  // byte offsets in the data section
  std::uint64_t end = 0;
};

// A validated header: the tensors' places and the metadata.
struct SafetensorsHeader {
  std::filesystem::path path;
  std::uint64_t header_bytes = 0;  // N
  std::uint64_t data_bytes = 0;    // size of the data section
  std::map<std::string, SafeTensorInfo> tensors;
  std::map<std::string, std::string> metadata;
};

// The tensors read from one file.
struct SafetensorsFile {
  std::filesystem::path path;
  std::map<std::string, SafeTensor> tensors;
  std::map<std::string, std::string> metadata;

  bool contains(const std::string& name) const { return tensors.count(name) != 0; }
  const SafeTensor& at(const std::string& name) const {
    const auto it = tensors.find(name);
    if (it == tensors.end()) detail::fail(path, "no tensor named '", name, "'");
    return it->second;
  }
  // The metadata value for `key`; throws naming the file and key when it is absent.
  const std::string& meta(const std::string& key) const {
    const auto it = metadata.find(key);
    if (it == metadata.end()) detail::fail(path, "no metadata entry '", key, "'");
    return it->second;
  }
};

namespace detail {

inline std::uint64_t json_offset(const std::filesystem::path& path, const std::string& name,
                                 const nlohmann::json& value) {
  if (!value.is_number_unsigned()) {
    fail(path, "tensor '", name, "': data_offsets must be non-negative integers, got ",
         value.dump());
  }
  return value.get<std::uint64_t>();
}

inline SafeTensorInfo parse_entry(const std::filesystem::path& path, const std::string& name,
                                  const nlohmann::json& entry) {
  if (!entry.is_object()) fail(path, "tensor '", name, "': entry is not a JSON object");
  for (const char* field : {"dtype", "shape", "data_offsets"}) {
    if (!entry.contains(field)) fail(path, "tensor '", name, "': missing field \"", field, "\"");
  }
  SafeTensorInfo info;
  const auto& dtype = entry["dtype"];
  if (!dtype.is_string()) fail(path, "tensor '", name, "': dtype is not a string");
  if (!parse_dtype(dtype.get<std::string>(), info.dtype)) {
    fail(path, "tensor '", name, "': unknown dtype \"", dtype.get<std::string>(), "\"");
  }
  const auto& shape = entry["shape"];
  if (!shape.is_array()) fail(path, "tensor '", name, "': shape is not an array");
  std::uint64_t numel = 1;
  for (const auto& extent : shape) {
    if (!extent.is_number_integer()) {
      fail(path, "tensor '", name, "': shape entries must be integers, got ", shape.dump());
    }
    if (!extent.is_number_unsigned()) {
      fail(path, "tensor '", name, "': negative extent in shape ", shape.dump());
    }
    const auto value = extent.get<std::uint64_t>();
    if (value > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) ||
        (value != 0 && numel > std::numeric_limits<std::uint64_t>::max() / 16 / value)) {
      fail(path, "tensor '", name, "': shape ", shape.dump(), " is too large");
    }
    numel *= value;
    info.shape.push_back(static_cast<std::int64_t>(value));
  }
  const auto& offsets = entry["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2) {
    fail(path, "tensor '", name, "': data_offsets must be [begin, end], got ", offsets.dump());
  }
  info.begin = json_offset(path, name, offsets[0]);
  info.end = json_offset(path, name, offsets[1]);
  if (info.end < info.begin) {
    fail(path, "tensor '", name, "': data_offsets [", info.begin, ", ", info.end,
         "] end before they begin");
  }
  const std::uint64_t expected = numel * dtype_size(info.dtype);
  if (info.end - info.begin != expected) {
    fail(path, "tensor '", name, "': byte count ", info.end - info.begin, " does not match ",
         dtype_name(info.dtype), " shape ", shape.dump(), " (", expected, " bytes)");
  }
  return info;
}

// Parses and validates the header text against a data section of `data_bytes` bytes.
inline void parse_header(const std::string& text, SafetensorsHeader& header) {
  const auto& path = header.path;
  int depth = 0;
  bool in_string = false, escaped = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxHeaderDepth) {
        fail(path, "header nests JSON arrays/objects more than ", kMaxHeaderDepth,
             " levels deep (at byte ", i, " of the header): not a safetensors header");
      }
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  nlohmann::json root;
  try {
    root = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail(path, "header is not valid JSON (", e.what(), ")");
  }
  if (!root.is_object()) fail(path, "header is not a JSON object");
  for (const auto& [name, entry] : root.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) fail(path, "__metadata__ is not a JSON object");
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string()) fail(path, "__metadata__ entry '", key, "' is not a string");
        header.metadata[key] = value.get<std::string>();
      }
      continue;
    }
    header.tensors[name] = parse_entry(path, name, entry);
  }

  // The tensors must tile the data section: no overlaps, no gaps, nothing out of range.
  std::vector<std::pair<const std::string*, const SafeTensorInfo*>> order;
  for (const auto& [name, info] : header.tensors) {
    if (info.end > header.data_bytes) {
      fail(path, "tensor '", name, "': data_offsets [", info.begin, ", ", info.end,
           "] lie out of the data section of ", header.data_bytes, " bytes");
    }
    order.emplace_back(&name, &info);
  }
  std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
    return std::make_pair(a.second->begin, a.second->end) <
           std::make_pair(b.second->begin, b.second->end);
  });
  std::uint64_t covered = 0;
  const std::string* previous = nullptr;
  for (const auto& [name, info] : order) {
    if (info->begin < covered) {
      fail(path, "tensor '", *name, "': data_offsets [", info->begin, ", ", info->end,
           "] overlap tensor '", *previous, "' (which ends at ", covered, ")");
    }
    if (info->begin > covered) {
      fail(path, "tensor '", *name, "': data_offsets [", info->begin, ", ", info->end,
           "] leave a gap of ", info->begin - covered, " bytes after byte ", covered);
    }
    covered = info->end;
    previous = name;
  }
  if (covered != header.data_bytes) {
    fail(path, "data section size mismatch: the file holds ", header.data_bytes,
         " data bytes but the tensors cover ", covered);
  }
}

inline std::ifstream open_for_reading(const std::filesystem::path& path) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(status)) fail(path, "file does not exist");
  if (!std::filesystem::is_regular_file(status)) fail(path, "not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open for reading (", std::strerror(errno), ")");
  return in;
}

inline SafetensorsHeader read_header(std::ifstream& in, const std::filesystem::path& path) {
  SafetensorsHeader header;
  header.path = path;
  std::error_code ec;
  const std::uint64_t file_bytes = std::filesystem::file_size(path, ec);
  if (ec) fail(path, "cannot get the file size (", ec.message(), ")");
  if (file_bytes < 8) {
    fail(path, "file is too short (", file_bytes, " bytes) to hold the 8-byte header length");
  }
  std::uint8_t length[8];
  if (!in.read(reinterpret_cast<char*>(length), 8)) fail(path, "cannot read the header length");
  header.header_bytes = load_le(length, 8);
  if (header.header_bytes > kMaxHeaderBytes) {
    fail(path, "header length ", header.header_bytes, " is absurd (limit ", kMaxHeaderBytes,
         " bytes): not a safetensors file, or a corrupt one");
  }
  if (header.header_bytes > file_bytes - 8) {
    fail(path, "header length ", header.header_bytes, " exceeds the ", file_bytes - 8,
         " bytes after the length field (file truncated?)");
  }
  header.data_bytes = file_bytes - 8 - header.header_bytes;
  std::string text(static_cast<std::size_t>(header.header_bytes), '\0');
  if (!in.read(text.data(), static_cast<std::streamsize>(text.size()))) {
    fail(path, "cannot read the ", header.header_bytes, "-byte header");
  }
  parse_header(text, header);
  return header;
}

inline SafeTensor read_tensor(std::ifstream& in, const SafetensorsHeader& header,
                              const std::string& name, const SafeTensorInfo& info) {
  SafeTensor tensor;
  tensor.dtype = info.dtype;
  tensor.shape = info.shape;
  tensor.bytes.resize(static_cast<std::size_t>(info.end - info.begin));
  in.seekg(static_cast<std::streamoff>(8 + header.header_bytes + info.begin));
  if (!in.read(reinterpret_cast<char*>(tensor.bytes.data()),
               static_cast<std::streamsize>(tensor.bytes.size()))) {
    fail(header.path, "tensor '", name, "': cannot read its ", tensor.bytes.size(),
         " bytes (file changed while reading?)");
  }
  return tensor;
}

}  // namespace detail

// The validated header of a file: which tensors it holds, without reading their data.
inline SafetensorsHeader read_safetensors_header(const std::filesystem::path& path) {
  auto in = detail::open_for_reading(path);
  return detail::read_header(in, path);
}

// Reads every tensor of the file.
inline SafetensorsFile read_safetensors(const std::filesystem::path& path) {
  auto in = detail::open_for_reading(path);
  const auto header = detail::read_header(in, path);
  SafetensorsFile file;
  file.path = path;
  file.metadata = header.metadata;
  for (const auto& [name, info] : header.tensors) {
    file.tensors[name] = detail::read_tensor(in, header, name, info);
  }
  return file;
}

// Reads only the named tensors (the whole header is still validated); throws naming the
// file and the tensor when one is absent.
inline SafetensorsFile read_safetensors(const std::filesystem::path& path,
                                        const std::vector<std::string>& names) {
  auto in = detail::open_for_reading(path);
  const auto header = detail::read_header(in, path);
  SafetensorsFile file;
  file.path = path;
  file.metadata = header.metadata;
  for (const auto& name : names) {
    const auto it = header.tensors.find(name);
    if (it == header.tensors.end()) {
      detail::fail(path, "no tensor named '", name, "' (the file holds ", header.tensors.size(),
                   " tensors)");
    }
    file.tensors[name] = detail::read_tensor(in, header, name, it->second);
  }
  return file;
}

namespace detail {

// Removes the temporary file unless the write committed it.
class TempFile {
 public:
  explicit TempFile(const std::filesystem::path& target) {
    const auto directory =
        target.parent_path().empty() ? std::filesystem::path(".") : target.parent_path();
    static std::atomic<unsigned> counter{0};
    for (int attempt = 0; attempt < 100; ++attempt) {
      path_ = directory / ("." + target.filename().string() + ".tmp." +
                           std::to_string(static_cast<long>(::getpid())) + "." +
                           std::to_string(counter.fetch_add(1)));
      fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
      if (fd_ >= 0 || errno != EEXIST) break;
    }
    if (fd_ < 0) {
      const int error = errno;
      path_.clear();
      throw Error(revox::detail::concat("safetensors: cannot write '", target.string(),
                                        "': cannot create a temporary file in '",
                                        directory.string(), "' (", std::strerror(error), ")"));
    }
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!path_.empty()) ::unlink(path_.c_str());
  }

  const std::filesystem::path& path() const { return path_; }
  int fd() const { return fd_; }
  // Closes the descriptor; returns 0 or an errno value.
  int close() {
    const int result = ::close(fd_);
    fd_ = -1;
    return result == 0 ? 0 : errno;
  }
  void release() { path_.clear(); }

 private:
  std::filesystem::path path_;
  int fd_ = -1;
};

// Writes all bytes or returns the errno value of the failure (0 on success).
inline int write_all(int fd, const void* data, std::size_t bytes) {
  const auto* p = static_cast<const char*>(data);
  while (bytes > 0) {
    const ssize_t written = ::write(fd, p, bytes);
    if (written < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    p += written;
    bytes -= static_cast<std::size_t>(written);
  }
  return 0;
}

// An errno value of a failed write, in words that say what to do about it.
inline std::string describe_write_error(int error) {
  switch (error) {
    case ENOSPC:
      return "no space left on the device";
    case EFBIG:
      return "file size limit reached (RLIMIT_FSIZE, `ulimit -f`) or the file is too large "
             "for the file system";
#ifdef EDQUOT
    case EDQUOT:
      return "disk quota exceeded (no space left for this user)";
#endif
    default:
      return std::strerror(error);
  }
}

}  // namespace detail

// Writes `tensors` and `metadata` to `path` atomically (see the top of this file). Throws
// revox::Error naming `path` on invalid tensors and on any I/O failure. `before_rename`, when
// set, is called with the temporary file's path once it is complete, synced and verified,
// just before it is renamed over `path` (for tests that stop a writer at that moment).
inline void write_safetensors(
    const std::filesystem::path& path, const std::map<std::string, SafeTensor>& tensors,
    const std::map<std::string, std::string>& metadata = {},
    const std::function<void(const std::filesystem::path&)>& before_rename = nullptr) {
  auto fail = [&](auto&&... parts) {
    throw Error(revox::detail::concat("safetensors: cannot write '", path.string(), "': ",
                                      parts...));
  };
  // Layout: decreasing element size, then name, so every tensor is aligned in the file.
  std::vector<const std::pair<const std::string, SafeTensor>*> order;
  for (const auto& entry : tensors) {
    const auto& [name, tensor] = entry;
    if (name == "__metadata__") fail("'__metadata__' is reserved and cannot name a tensor");
    std::uint64_t numel = 1;
    for (std::int64_t extent : tensor.shape) {
      if (extent < 0) fail("tensor '", name, "' has a negative extent ", extent);
      numel *= static_cast<std::uint64_t>(extent);
    }
    if (tensor.bytes.size() != numel * dtype_size(tensor.dtype)) {
      fail("tensor '", name, "' holds ", tensor.bytes.size(), " bytes, but ", numel, " ",
           dtype_name(tensor.dtype), " elements need ", numel * dtype_size(tensor.dtype));
    }
    order.push_back(&entry);
  }
  std::stable_sort(order.begin(), order.end(), [](const auto* a, const auto* b) {
    return dtype_size(a->second.dtype) > dtype_size(b->second.dtype);
  });

  nlohmann::json header = nlohmann::json::object();
  std::uint64_t data_bytes = 0;
  for (const auto* entry : order) {
    const auto& [name, tensor] = *entry;
    const std::uint64_t end = data_bytes + tensor.bytes.size();
    header[name] = {{"dtype", dtype_name(tensor.dtype)},
                    {"shape", tensor.shape},
                    {"data_offsets", {data_bytes, end}}};
    data_bytes = end;
  }
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::uint8_t length[8];
  detail::store_le(text.size(), 8, length);

  detail::TempFile temp(path);
  int error = detail::write_all(temp.fd(), length, 8);
  if (error == 0) error = detail::write_all(temp.fd(), text.data(), text.size());
  for (const auto* entry : order) {
    if (error != 0) break;
    error = detail::write_all(temp.fd(), entry->second.bytes.data(), entry->second.bytes.size());
  }
  if (error != 0) {
    fail("writing '", temp.path().string(), "' failed: ", detail::describe_write_error(error),
         " (the temporary file is removed; an existing '", path.filename().string(),
         "' is left as it was)");
  }
  if (::fsync(temp.fd()) != 0) {
    fail("fsync of '", temp.path().string(), "' failed: ", detail::describe_write_error(errno));
  }
  if ((error = temp.close()) != 0) {
    fail("closing '", temp.path().string(), "' failed: ", detail::describe_write_error(error));
  }

  // Read back and verify before the target is touched, one tensor at a time.
  std::string problem;
  try {
    auto in = detail::open_for_reading(temp.path());
    const auto written = detail::read_header(in, temp.path());
    if (written.metadata != metadata || written.tensors.size() != tensors.size()) {
      problem = "the header reads back differently";
    }
    for (auto it = tensors.begin(); problem.empty() && it != tensors.end(); ++it) {
      const auto info = written.tensors.find(it->first);
      if (info == written.tensors.end() ||
          detail::read_tensor(in, written, it->first, info->second).bytes != it->second.bytes ||
          info->second.dtype != it->second.dtype || info->second.shape != it->second.shape) {
        problem = "tensor '" + it->first + "' reads back differently";
      }
    }
  } catch (const Error& e) {
    problem = e.what();
  }
  if (!problem.empty()) fail("verification of '", temp.path().string(), "' failed: ", problem);
  if (before_rename) before_rename(temp.path());

  if (std::rename(temp.path().c_str(), path.c_str()) != 0) {
    fail("renaming '", temp.path().string(), "' over it failed (", std::strerror(errno), ")");
  }
  temp.release();
  // Make the rename itself durable; a directory that cannot be synced is not an error.
  const auto directory = path.parent_path().empty() ? std::filesystem::path(".")
                                                    : path.parent_path();
  const int dir_fd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
}

}  // namespace revox::io
