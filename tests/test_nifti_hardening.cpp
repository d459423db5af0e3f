// NIfTI reader hardening: the byte limit checked before anything is inflated (a tiny .nii.gz
// that really inflates to 2 GB), out of memory turned into a revox::Error naming the file,
// the NaN policy, gzip and header messages that say what is wrong, and dim[4..7] = 1 in
// written files. Files are made byte by byte here, the gzip bomb with zlib in a few MB.
#include <catch2/catch.hpp>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "revox/io/nifti.hpp"

#include "support/file_bytes.hpp"
#include "support/temp_dir.hpp"

namespace fs = std::filesystem;
using revox::io::NanPolicy;
using revox::io::NiftiReadOptions;
using revox::io::read_nifti;

namespace {

using revox_test::Bytes;

class TempDir : public revox_test::TempDir {
 public:
  TempDir() : revox_test::TempDir("revox_test_nifti_hardening") {}
};

// Sets an environment variable for one scope and restores the previous value.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value != nullptr) {
      ::setenv(name, value, 1);
    } else {
      ::unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

template <class T>
void put(Bytes& bytes, std::size_t offset, T value) {
  std::memcpy(bytes.data() + offset, &value, sizeof(T));
}

struct Header {
  std::array<std::int16_t, 8> dim{3, 4, 3, 2, 1, 1, 1, 1};
  int datatype = 16;  // float32
  int bitpix = 32;
  float scl_slope = 0, scl_inter = 0;
  int qform_code = 0, sform_code = 0;
  std::array<float, 3> quatern{}, qoffset{};
  float qfac = 1;
  std::array<std::array<float, 4>, 3> srow{{{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}}};
};

// A little-endian NIfTI-1 header and extension flag (352 bytes).
Bytes header_bytes(const Header& h) {
  Bytes b(352, 0);
  put<std::int32_t>(b, 0, 348);
  std::memcpy(b.data() + 344, "n+1\0", 4);
  for (int i = 0; i < 8; ++i) put<std::int16_t>(b, 40 + 2 * i, h.dim[i]);
  put<std::int16_t>(b, 70, static_cast<std::int16_t>(h.datatype));
  put<std::int16_t>(b, 72, static_cast<std::int16_t>(h.bitpix));
  const float pixdim[8] = {h.qfac, 1, 1, 1, 0, 0, 0, 0};
  for (int i = 0; i < 8; ++i) put<float>(b, 76 + 4 * i, pixdim[i]);
  put<float>(b, 108, 352.0f);
  put<float>(b, 112, h.scl_slope);
  put<float>(b, 116, h.scl_inter);
  b[123] = 2;  // mm
  put<std::int16_t>(b, 252, static_cast<std::int16_t>(h.qform_code));
  put<std::int16_t>(b, 254, static_cast<std::int16_t>(h.sform_code));
  for (int i = 0; i < 3; ++i) put<float>(b, 256 + 4 * i, h.quatern[i]);
  for (int i = 0; i < 3; ++i) put<float>(b, 268 + 4 * i, h.qoffset[i]);
  for (int r = 0; r < 3; ++r) {
    for (int c = 0; c < 4; ++c) put<float>(b, 280 + 16 * r + 4 * c, h.srow[r][c]);
  }
  return b;
}

template <class T>
Bytes encode(const std::vector<T>& values) {
  Bytes out(values.size() * sizeof(T));
  if (!values.empty()) std::memcpy(out.data(), values.data(), out.size());
  return out;
}

using revox_test::concat;
using revox_test::gzip;
using revox_test::write_file;

// Raw deflate output of `input` followed by a full flush (byte-aligned, history reset).
Bytes deflate_flushed(z_stream& stream, const Bytes& input) {
  Bytes out;
  std::vector<std::uint8_t> buffer(1 << 16);
  stream.next_in = const_cast<Bytef*>(input.data());
  stream.avail_in = static_cast<uInt>(input.size());
  do {
    stream.next_out = buffer.data();
    stream.avail_out = static_cast<uInt>(buffer.size());
    REQUIRE(deflate(&stream, Z_FULL_FLUSH) == Z_OK);
    out.insert(out.end(), buffer.data(), buffer.data() + (buffer.size() - stream.avail_out));
  } while (stream.avail_out == 0 || stream.avail_in > 0);
  return out;
}

// A valid .nii.gz whose data section is `data_bytes` zero bytes: the header and the zeros
// are deflated in 1 MiB chunks; after a full flush an all-zero chunk compresses to the same
// bytes every time, so they are written once per chunk without deflating gigabytes. The
// gzip trailer's CRC-32 and length are those of all the inflated bytes.
void write_zero_nifti_gz(const fs::path& path, const Header& h, std::uint64_t data_bytes) {
  constexpr std::uint64_t kChunk = 1 << 20;
  z_stream stream{};
  REQUIRE(deflateInit2(&stream, 9, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  const Bytes header = header_bytes(h);
  const Bytes deflated_header = deflate_flushed(stream, header);
  const Bytes zeros(kChunk, 0);
  const Bytes first = deflate_flushed(stream, zeros);
  const Bytes repeat = deflate_flushed(stream, zeros);
  REQUIRE(first == repeat);
  const std::uint64_t tail = data_bytes % kChunk;
  const Bytes deflated_tail = deflate_flushed(stream, Bytes(tail, 0));
  Bytes end(64);
  stream.next_in = nullptr;
  stream.avail_in = 0;
  stream.next_out = end.data();
  stream.avail_out = static_cast<uInt>(end.size());
  REQUIRE(deflate(&stream, Z_FINISH) == Z_STREAM_END);
  end.resize(end.size() - stream.avail_out);
  deflateEnd(&stream);

  const uLong crc_zeros_chunk = crc32(0L, zeros.data(), static_cast<uInt>(kChunk));
  uLong crc = crc32(0L, header.data(), static_cast<uInt>(header.size()));
  std::ofstream out(path, std::ios::binary);
  const auto emit = [&](const Bytes& bytes) {
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
  };
  emit(Bytes{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3});  // gzip member header, no name
  emit(deflated_header);
  for (std::uint64_t i = 0; i < data_bytes / kChunk; ++i) {
    emit(repeat);
    crc = crc32_combine(crc, crc_zeros_chunk, static_cast<z_off_t>(kChunk));
  }
  emit(deflated_tail);
  if (tail > 0) {
    crc = crc32_combine(crc, crc32(0L, zeros.data(), static_cast<uInt>(tail)),
                        static_cast<z_off_t>(tail));
  }
  emit(end);
  const std::uint64_t total = header.size() + data_bytes;
  Bytes trailer(8);
  put<std::uint32_t>(trailer, 0, static_cast<std::uint32_t>(crc));
  put<std::uint32_t>(trailer, 4, static_cast<std::uint32_t>(total & 0xffffffffu));
  emit(trailer);
  REQUIRE(out.good());
}

Header uint8_header(std::int16_t nx, std::int16_t ny, std::int16_t nz) {
  Header h;
  h.dim = {3, nx, ny, nz, 1, 1, 1, 1};
  h.datatype = 2;
  h.bitpix = 8;
  return h;
}

std::string read_error(const fs::path& path, const NiftiReadOptions& options = {}) {
  try {
    read_nifti(path, options);
  } catch (const revox::Error& e) {
    return e.what();
  }
  return "";
}

std::string prefix(const fs::path& path) { return "NIfTI file '" + path.string() + "': "; }

// 32767 x 32767 x 2 uint8: 2147352578 bytes of data; 10736762890 with the float32 volume.
constexpr std::uint64_t kBombData = 32767ull * 32767ull * 2ull;
constexpr std::uint64_t kBombMemory = kBombData * 5;

std::string bomb_message(const fs::path& path, std::uint64_t limit, const std::string& source) {
  return prefix(path) + "header declares 32767x32767x2 uint8 = 2147352578 bytes of voxel "
         "data, 10736762890 bytes in memory with the float32 volume; that is more than the "
         "limit of " + std::to_string(limit) + " bytes (" + source + "). If the file is meant "
         "to be this large, raise the limit with the environment variable "
         "REVOX_NIFTI_MAX_BYTES (e.g. REVOX_NIFTI_MAX_BYTES=32G) or "
         "NiftiReadOptions::max_bytes";
}

bool built_with_sanitizer() {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  return true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
  return true;
#else
  return false;
#endif
#else
  return false;
#endif
}

std::uint64_t vm_size_bytes() {
  std::ifstream status("/proc/self/status");
  std::string key;
  while (status >> key) {
    if (key == "VmSize:") {
      std::uint64_t kb = 0;
      status >> kb;
      return kb * 1024;
    }
    std::getline(status, key);
  }
  return 0;
}

}  // namespace

TEST_CASE("read_nifti refuses a tiny .nii.gz that inflates past the byte limit, before "
          "inflating it", "[io][nifti]") {
  TempDir dir;
  // The generator makes valid files: a small one reads back as all zeros.
  const fs::path small = dir / "small.nii.gz";
  write_zero_nifti_gz(small, uint8_header(256, 256, 40), 256ull * 256 * 40);
  const auto volume = read_nifti(small);
  REQUIRE(volume.data.shape() == revox::Shape5{1, 1, 40, 256, 256});
  CHECK(std::all_of(volume.data.data(), volume.data.data() + volume.data.numel(),
                    [](float v) { return v == 0.0f; }));

  const fs::path bomb = dir / "bomb.nii.gz";
  write_zero_nifti_gz(bomb, uint8_header(32767, 32767, 2), kBombData);
  CHECK(fs::file_size(bomb) < 8u << 20);  // a few MB that inflate to 2 GB

  SECTION("an explicit limit") {
    NiftiReadOptions options;
    options.max_bytes = std::uint64_t{1} << 30;
    CHECK(read_error(bomb, options) ==
          bomb_message(bomb, std::uint64_t{1} << 30, "NiftiReadOptions::max_bytes"));
  }
  SECTION("the limit from REVOX_NIFTI_MAX_BYTES") {
    ScopedEnv env("REVOX_NIFTI_MAX_BYTES", "2G");
    CHECK(read_error(bomb) == bomb_message(bomb, std::uint64_t{2} << 30, "REVOX_NIFTI_MAX_BYTES"));
  }
  SECTION("the default limit, at most 8 GiB, refuses it on any machine") {
    ScopedEnv env("REVOX_NIFTI_MAX_BYTES", nullptr);
    const std::uint64_t limit = revox::io::default_nifti_max_bytes();
    CHECK(limit >= std::uint64_t{1} << 30);
    CHECK(limit <= std::uint64_t{8} << 30);
    CHECK(limit < kBombMemory);
    CHECK(revox::io::nifti_max_bytes().bytes == limit);
    CHECK(read_error(bomb) ==
          bomb_message(bomb, limit,
                       "default: a quarter of the available memory, at least 1 GiB, at most "
                       "8 GiB"));
  }
}

TEST_CASE("the NIfTI byte limit: exact boundary, option over environment, bad values",
          "[io][nifti]") {
  TempDir dir;
  const fs::path path = dir / "small.nii";
  Header h;  // 4x3x2 float32: 96 bytes of data + 96 of float32 volume
  write_file(path, concat(header_bytes(h), encode(std::vector<float>(24, 1.5f))));
  NiftiReadOptions options;
  options.max_bytes = 192;
  CHECK(read_nifti(path, options).data.numel() == 24);
  options.max_bytes = 191;
  CHECK(read_error(path, options) ==
        prefix(path) + "header declares 4x3x2 float32 = 96 bytes of voxel data, 192 bytes in "
        "memory with the float32 volume; that is more than the limit of 191 bytes "
        "(NiftiReadOptions::max_bytes). If the file is meant to be this large, raise the limit "
        "with the environment variable REVOX_NIFTI_MAX_BYTES (e.g. REVOX_NIFTI_MAX_BYTES=32G) "
        "or NiftiReadOptions::max_bytes");
  {
    ScopedEnv env("REVOX_NIFTI_MAX_BYTES", "1");
    options.max_bytes = 192;  // the option wins over the environment
    CHECK(read_nifti(path, options).data.numel() == 24);
    CHECK(read_error(path).find("more than the limit of 1 bytes (REVOX_NIFTI_MAX_BYTES)") !=
          std::string::npos);
  }
  for (const auto& [text, bytes] : std::vector<std::pair<std::string, std::uint64_t>>{
           {"4096", 4096}, {"512k", 512ull << 10}, {"512M", 512ull << 20}, {"3G", 3ull << 30},
           {"1T", 1ull << 40}}) {
    ScopedEnv env("REVOX_NIFTI_MAX_BYTES", text.c_str());
    CHECK(revox::io::nifti_max_bytes().bytes == bytes);
  }
  for (const char* bad : {"lots", "-5", "0", "12X", "1.5G", "G"}) {
    INFO(bad);
    ScopedEnv env("REVOX_NIFTI_MAX_BYTES", bad);
    CHECK(read_error(path) == std::string("REVOX_NIFTI_MAX_BYTES='") + bad +
                                  "' is not a positive number of bytes (e.g. 8000000000, 512M "
                                  "or 8G: K, M, G, T are powers of 1024)");
  }
}

TEST_CASE("read_nifti turns running out of memory into an error naming the file and the size",
          "[io][nifti]") {
  if (built_with_sanitizer()) {
    WARN("skipped: an address-space limit does not work under sanitizers");
    return;
  }
  TempDir dir;
  const fs::path bomb = dir / "bomb.nii.gz";
  write_zero_nifti_gz(bomb, uint8_header(32767, 32767, 2), kBombData);
  int pipe_fds[2];
  REQUIRE(::pipe(pipe_fds) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // The child caps its address space 512 MB above what it uses now, allows any size, and
    // reads the 2 GB bomb: the buffer of the data section cannot grow that far.
    ::close(pipe_fds[0]);
    std::string message = "no error";
    try {
      const std::uint64_t limit = vm_size_bytes() + (std::uint64_t{512} << 20);
      rlimit cap{static_cast<rlim_t>(limit), static_cast<rlim_t>(limit)};
      if (vm_size_bytes() == 0 || ::setrlimit(RLIMIT_AS, &cap) != 0) {
        message = "setrlimit failed";
      } else {
        NiftiReadOptions options;
        options.max_bytes = std::uint64_t{1} << 40;
        read_nifti(bomb, options);
      }
    } catch (const revox::Error& e) {
      message = e.what();
    } catch (const std::exception& e) {
      message = std::string("not a revox::Error: ") + e.what();
    }
    const ssize_t written = ::write(pipe_fds[1], message.data(), message.size());
    ::_exit(written == static_cast<ssize_t>(message.size()) ? 0 : 1);
  }
  ::close(pipe_fds[1]);
  std::string message;
  char buffer[4096];
  for (ssize_t got; (got = ::read(pipe_fds[0], buffer, sizeof buffer)) > 0;) {
    message.append(buffer, static_cast<std::size_t>(got));
  }
  ::close(pipe_fds[0]);
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status));
  INFO(message);
  CHECK(message.rfind(prefix(bomb) + "out of memory reading 32767x32767x2 uint8 (2147352578 "
                      "bytes from offset 352): it needs 10736762890 bytes with the float32 "
                      "volume (", 0) == 0);
}

TEST_CASE("the NaN policy: error names the policy, zero sets NaN and Inf to 0 and counts them",
          "[io][nifti]") {
  TempDir dir;
  std::vector<float> values(24);
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i) + 0.5f;
  values[1 + 4 * 2] = std::numeric_limits<float>::quiet_NaN();  // (1, 2, 0)
  values[3 + 4 * 3] = std::numeric_limits<float>::infinity();   // (3, 0, 1)
  values[23] = -std::numeric_limits<float>::infinity();
  const fs::path path = dir / "nan_background.nii.gz";
  write_file(path, gzip(concat(header_bytes(Header{}), encode(values))));

  CHECK(read_error(path) ==
        prefix(path) + "3 NaN or Inf voxels; the first at (x, y, z) = (1, 2, 0); to read such "
        "voxels as 0, choose the NaN policy \"zero\" (revox-brats --nan-policy zero, or "
        "NiftiReadOptions::nan_policy = NanPolicy::zero)");
  NiftiReadOptions options;
  options.nan_hint = " (labels must be finite)";
  CHECK(read_error(path, options) ==
        prefix(path) + "3 NaN or Inf voxels; the first at (x, y, z) = (1, 2, 0) (labels must "
        "be finite)");

  options = NiftiReadOptions{};
  options.nan_policy = NanPolicy::zero;
  const auto volume = read_nifti(path, options);
  CHECK(volume.non_finite_zeroed == 3);
  for (std::size_t i = 0; i < values.size(); ++i) {
    INFO("voxel " << i);
    const float expected = std::isfinite(values[i]) ? values[i] : 0.0f;
    CHECK(volume.data[static_cast<revox::index_t>(i)] == expected);
  }
  // A clean file reads the same under either policy, with nothing zeroed.
  const fs::path clean = dir / "clean.nii";
  values.assign(24, 2.0f);
  write_file(clean, concat(header_bytes(Header{}), encode(values)));
  CHECK(read_nifti(clean, options).non_finite_zeroed == 0);
  CHECK(read_nifti(clean).non_finite_zeroed == 0);

  CHECK(revox::io::nan_policy_from_string("error") == NanPolicy::error);
  CHECK(revox::io::nan_policy_from_string("zero") == NanPolicy::zero);
  CHECK(std::string(revox::io::to_string(NanPolicy::zero)) == "zero");
  CHECK_THROWS_WITH(revox::io::nan_policy_from_string("ignore"),
                    "unknown NaN policy 'ignore': expected \"error\" or \"zero\"");
}

TEST_CASE("NaN/Inf messages say 'after scaling' only when scaling made the value non-finite",
          "[io][nifti]") {
  TempDir dir;
  // A stored NaN with a real scaling: the NaN was in the file, not made by scaling.
  Header h;
  h.scl_slope = 2;
  h.scl_inter = 1;
  std::vector<float> values(24, 1.0f);
  values[5] = std::numeric_limits<float>::quiet_NaN();  // (1, 1, 0)
  const fs::path stored = dir / "stored.nii";
  write_file(stored, concat(header_bytes(h), encode(values)));
  CHECK(read_error(stored).find("1 NaN or Inf voxel; the first at (x, y, z) = (1, 1, 0);") !=
        std::string::npos);
  // Identity scaling (slope 1, intercept 0) applies nothing: a float64 beyond float32's range.
  Header identity;
  identity.datatype = 64;
  identity.bitpix = 64;
  identity.scl_slope = 1;
  std::vector<double> doubles(24, 0.0);
  doubles[5] = 1e300;
  const fs::path big = dir / "big.nii";
  write_file(big, concat(header_bytes(identity), encode(doubles)));
  const std::string big_error = read_error(big);
  CHECK(big_error.find("1 NaN or Inf voxel; the first at (x, y, z) = (1, 1, 0);") !=
        std::string::npos);
  CHECK(big_error.find("after scaling") == std::string::npos);
  // A finite int16 times slope 1e38 overflows: that is scaling.
  Header scaled;
  scaled.datatype = 4;
  scaled.bitpix = 16;
  scaled.scl_slope = 1e38f;
  std::vector<std::int16_t> ints(24, 0);
  ints[13] = 1000;  // (1, 0, 1)
  const fs::path overflow = dir / "scaled.nii";
  write_file(overflow, concat(header_bytes(scaled), encode(ints)));
  CHECK(read_error(overflow).find("1 NaN or Inf voxel (after scaling); the first at (x, y, z) "
                                  "= (1, 0, 1);") != std::string::npos);
}

TEST_CASE("gzip problems are named: CRC mismatch, length mismatch, data after the stream",
          "[io][nifti]") {
  TempDir dir;
  const Bytes raw = concat(header_bytes(Header{}), encode(std::vector<float>(24, 1.0f)));
  const Bytes good = gzip(raw);
  REQUIRE(raw.size() == 448);

  Bytes crc = good;
  crc[crc.size() - 8] ^= 0xff;
  write_file(dir / "crc.nii.gz", crc);
  CHECK(read_error(dir / "crc.nii.gz") ==
        prefix(dir / "crc.nii.gz") + "the gzip CRC does not match the decompressed data: the "
        "file is corrupted (zlib: incorrect data check, after 448 decompressed bytes)");

  Bytes length = good;
  length[length.size() - 4] ^= 0x01;
  write_file(dir / "length.nii.gz", length);
  CHECK(read_error(dir / "length.nii.gz") ==
        prefix(dir / "length.nii.gz") + "the gzip length trailer does not match the "
        "decompressed size: the file is corrupted (zlib: incorrect length check, after 448 "
        "decompressed bytes)");

  const fs::path padded = dir / "padded.nii.gz";
  write_file(padded, concat(good, Bytes(16, 0)));
  CHECK(read_error(padded) ==
        prefix(padded) + "data after the end of the compressed stream: 16 bytes from offset " +
            std::to_string(good.size()) + " are not another gzip member (the 448 decompressed "
            "bytes before them are complete)");
  // One stray byte that is not 0x1f is named the same way.
  const fs::path stray = dir / "stray.nii.gz";
  write_file(stray, concat(good, Bytes{'\n'}));
  CHECK(read_error(stray).find("data after the end of the compressed stream: 1 byte from "
                               "offset") != std::string::npos);
  // Concatenated members still read.
  write_file(dir / "members.nii.gz", concat(gzip(Bytes(raw.begin(), raw.begin() + 200)),
                                            gzip(Bytes(raw.begin() + 200, raw.end()))));
  CHECK(read_nifti(dir / "members.nii.gz").data.numel() == 24);
}

TEST_CASE("non-finite qform and sform fields are named", "[io][nifti]") {
  TempDir dir;
  const Bytes data = encode(std::vector<float>(24, 1.0f));
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  const std::pair<const char*, void (*)(Header&)> cases[] = {
      {"quatern_b = nan", [](Header& h) { h.quatern[0] = std::numeric_limits<float>::quiet_NaN(); }},
      {"quatern_c = nan", [](Header& h) { h.quatern[1] = std::numeric_limits<float>::quiet_NaN(); }},
      {"quatern_d = inf", [](Header& h) { h.quatern[2] = std::numeric_limits<float>::infinity(); }},
      {"qoffset_x = nan", [](Header& h) { h.qoffset[0] = std::numeric_limits<float>::quiet_NaN(); }},
      {"qoffset_y = -inf", [](Header& h) { h.qoffset[1] = -std::numeric_limits<float>::infinity(); }},
      {"qoffset_z = nan", [](Header& h) { h.qoffset[2] = std::numeric_limits<float>::quiet_NaN(); }},
      {"pixdim[0] (qfac) = nan", [](Header& h) { h.qfac = std::numeric_limits<float>::quiet_NaN(); }},
  };
  for (const auto& [name, spoil] : cases) {
    Header h;
    h.qform_code = 1;
    spoil(h);
    const fs::path path = dir / "qform.nii";
    write_file(path, concat(header_bytes(h), data));
    CHECK(read_error(path) == prefix(path) + "non-finite qform parameter " + name +
                                  " (qform_code 1)");
  }
  Header h;
  h.sform_code = 2;
  h.srow[1][3] = inf;
  write_file(dir / "sform.nii", concat(header_bytes(h), data));
  CHECK(read_error(dir / "sform.nii") ==
        prefix(dir / "sform.nii") + "non-finite sform entry srow_y[3] = inf (sform_code 2)");
  // Unused fields may hold anything: qform_code 0 ignores the quaternion.
  Header unused;
  unused.quatern[0] = nan;
  write_file(dir / "unused.nii", concat(header_bytes(unused), data));
  CHECK(read_nifti(dir / "unused.nii").data.numel() == 24);
}

TEST_CASE("written NIfTI files have dim[4..7] = 1", "[io][nifti]") {
  TempDir dir;
  revox::Tensor<float> volume(revox::Shape5{1, 1, 2, 3, 4});
  for (revox::index_t i = 0; i < volume.numel(); ++i) volume[i] = static_cast<float>(i);
  revox::Tensor<std::uint8_t> labels(revox::Shape5{1, 1, 2, 3, 4});
  for (revox::index_t i = 0; i < labels.numel(); ++i) labels[i] = static_cast<std::uint8_t>(i % 3);
  revox::io::write_nifti(dir / "map.nii", volume, revox::io::default_geometry());
  revox::io::write_nifti_labels(dir / "labels.nii", labels, revox::io::default_geometry());
  for (const char* name : {"map.nii", "labels.nii"}) {
    INFO(name);
    std::ifstream in(dir / name, std::ios::binary);
    Bytes header(348);
    in.read(reinterpret_cast<char*>(header.data()), 348);
    REQUIRE(in.good());
    std::int16_t dim[8];
    std::memcpy(dim, header.data() + 40, sizeof dim);
    CHECK(std::vector<std::int16_t>(dim, dim + 8) ==
          std::vector<std::int16_t>{3, 4, 3, 2, 1, 1, 1, 1});
  }
}
