// NIfTI reader/writer: every datatype in both byte orders, NIfTI-1 and NIfTI-2, .nii and
// .nii.gz, scaling and geometry rules; every kind of bad file rejected with a message naming
// the file and the problem; atomic writes that read back exactly and leave nothing behind.
// Test files are made byte by byte here (a small header writer and zlib), not by nifti_clib.
#include <catch2/catch.hpp>

#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

#include "revox/io/nifti.hpp"

#include "support/file_bytes.hpp"
#include "support/temp_dir.hpp"

namespace fs = std::filesystem;
using revox::io::NiftiGeometry;
using revox::io::read_nifti;

namespace {

class TempDir : public revox_test::TempDir {
 public:
  TempDir() : revox_test::TempDir("revox_test_nifti") {}
};

std::vector<std::string> entries(const fs::path& directory) {
  return revox_test::directory_entries(directory);
}

using revox_test::Bytes;

template <class T>
void put(Bytes& bytes, std::size_t offset, T value, bool big_endian) {
  std::uint8_t raw[sizeof(T)];
  std::memcpy(raw, &value, sizeof(T));
  if (big_endian) std::reverse(raw, raw + sizeof(T));
  std::memcpy(bytes.data() + offset, raw, sizeof(T));
}

// The fields a test sets; everything else in the header stays zero.
struct Header {
  int version = 1;
  bool big_endian = false;
  std::array<std::int64_t, 8> dim{3, 4, 3, 2, 1, 1, 1, 1};
  int datatype = 16;  // float32
  int bitpix = 32;
  std::array<double, 8> pixdim{1, 1, 1, 1, 0, 0, 0, 0};
  double vox_offset = 0;  // 0: 352 (NIfTI-1) or 544 (NIfTI-2)
  double scl_slope = 0, scl_inter = 0;
  int qform_code = 0, sform_code = 0;
  std::array<double, 3> quatern{}, qoffset{};
  std::array<std::array<double, 4>, 3> srow{};
  int sizeof_hdr = 0;  // 0: 348 or 540
  std::string magic;   // empty: the right one for the version
};

// The header plus the 4-byte extension flag, padded up to vox_offset.
Bytes header_bytes(const Header& h) {
  const bool be = h.big_endian;
  const double default_offset = h.version == 1 ? 352 : 544;
  const double vox_offset = h.vox_offset != 0 ? h.vox_offset : default_offset;
  Bytes b(static_cast<std::size_t>(std::max(vox_offset, default_offset)), 0);
  const int sizeof_hdr = h.sizeof_hdr != 0 ? h.sizeof_hdr : (h.version == 1 ? 348 : 540);
  put<std::int32_t>(b, 0, sizeof_hdr, be);
  if (h.version == 1) {
    const std::string magic = h.magic.empty() ? std::string("n+1\0", 4) : h.magic;
    std::memcpy(b.data() + 344, magic.data(), std::min<std::size_t>(magic.size(), 4));
    for (int i = 0; i < 8; ++i)
      put<std::int16_t>(b, 40 + 2 * i, static_cast<std::int16_t>(h.dim[i]), be);
    put<std::int16_t>(b, 70, static_cast<std::int16_t>(h.datatype), be);
    put<std::int16_t>(b, 72, static_cast<std::int16_t>(h.bitpix), be);
    for (int i = 0; i < 8; ++i) put<float>(b, 76 + 4 * i, static_cast<float>(h.pixdim[i]), be);
    put<float>(b, 108, static_cast<float>(vox_offset), be);
    put<float>(b, 112, static_cast<float>(h.scl_slope), be);
    put<float>(b, 116, static_cast<float>(h.scl_inter), be);
    b[123] = 2;  // xyzt_units: mm
    put<std::int16_t>(b, 252, static_cast<std::int16_t>(h.qform_code), be);
    put<std::int16_t>(b, 254, static_cast<std::int16_t>(h.sform_code), be);
    for (int i = 0; i < 3; ++i) put<float>(b, 256 + 4 * i, static_cast<float>(h.quatern[i]), be);
    for (int i = 0; i < 3; ++i) put<float>(b, 268 + 4 * i, static_cast<float>(h.qoffset[i]), be);
    for (int r = 0; r < 3; ++r) {
      for (int c = 0; c < 4; ++c) {
        put<float>(b, 280 + 16 * r + 4 * c, static_cast<float>(h.srow[r][c]), be);
      }
    }
    return b;
  }
  const std::string magic = h.magic.empty() ? std::string("n+2\0\r\n\x1a\n", 8) : h.magic;
  std::memcpy(b.data() + 4, magic.data(), std::min<std::size_t>(magic.size(), 8));
  put<std::int16_t>(b, 12, static_cast<std::int16_t>(h.datatype), be);
  put<std::int16_t>(b, 14, static_cast<std::int16_t>(h.bitpix), be);
  for (int i = 0; i < 8; ++i) put<std::int64_t>(b, 16 + 8 * i, h.dim[i], be);
  for (int i = 0; i < 8; ++i) put<double>(b, 104 + 8 * i, h.pixdim[i], be);
  put<std::int64_t>(b, 168, static_cast<std::int64_t>(vox_offset), be);
  put<double>(b, 176, h.scl_slope, be);
  put<double>(b, 184, h.scl_inter, be);
  put<std::int32_t>(b, 344, h.qform_code, be);
  put<std::int32_t>(b, 348, h.sform_code, be);
  for (int i = 0; i < 3; ++i) put<double>(b, 352 + 8 * i, h.quatern[i], be);
  for (int i = 0; i < 3; ++i) put<double>(b, 376 + 8 * i, h.qoffset[i], be);
  for (int r = 0; r < 3; ++r) {
    for (int c = 0; c < 4; ++c) put<double>(b, 400 + 32 * r + 8 * c, h.srow[r][c], be);
  }
  put<std::int32_t>(b, 500, 2, be);  // xyzt_units: mm
  return b;
}

template <class T>
Bytes encode(const std::vector<T>& values, bool big_endian) {
  Bytes out(values.size() * sizeof(T));
  for (std::size_t i = 0; i < values.size(); ++i) put<T>(out, i * sizeof(T), values[i], big_endian);
  return out;
}

using revox_test::concat;
using revox_test::gzip;
using revox_test::write_file;

// A NIfTI file from a header and data bytes, gzip-compressed when the name ends in .gz.
void write_nifti_file(const fs::path& path, const Header& h, const Bytes& data) {
  const Bytes raw = concat(header_bytes(h), data);
  const std::string name = path.filename().string();
  write_file(path, name.size() > 3 && name.substr(name.size() - 3) == ".gz" ? gzip(raw) : raw);
}

Bytes float_data(std::size_t count, bool big_endian = false) {
  std::vector<float> values(count);
  for (std::size_t i = 0; i < count; ++i) values[i] = static_cast<float>(i) * 0.5f - 3.0f;
  return encode(values, big_endian);
}

// The message of the revox::Error that reading `path` throws ("" when it does not throw).
std::string read_error(const fs::path& path) {
  try {
    read_nifti(path);
  } catch (const revox::Error& e) {
    return e.what();
  }
  return "";
}

// Reading `path` fails with a message naming the exact path and containing `problem`.
void require_rejected(const fs::path& path, const std::string& problem) {
  const std::string message = read_error(path);
  INFO("file: " << path.string() << "\nmessage: " << message);
  CHECK(message.find("NIfTI file '" + path.string() + "': ") == 0);
  CHECK(message.find(problem) != std::string::npos);
}

// Expected value of voxel i for each datatype, spanning negative and large values.
template <class T>
std::vector<T> sample_values(std::size_t count) {
  std::vector<T> values(count);
  for (std::size_t i = 0; i < count; ++i) {
    const auto k = static_cast<double>(i);
    double v = 0;
    if constexpr (std::is_same_v<T, std::uint8_t>) v = 255 - 10 * k;
    else if constexpr (std::is_same_v<T, std::int8_t>) v = -128 + 11 * k;
    else if constexpr (std::is_same_v<T, std::int16_t>) v = -32768 + 2800 * k;
    else if constexpr (std::is_same_v<T, std::uint16_t>) v = 65535 - 2800 * k;
    else if constexpr (std::is_same_v<T, std::int32_t>) v = -2000000000 + 170000000 * k;
    else if constexpr (std::is_same_v<T, float>) v = -1.5e3 + 123.25 * k;
    else v = -1e-3 + 0.1 * k + 1e-12;
    values[i] = static_cast<T>(v);
  }
  return values;
}

template <class T>
void check_datatype_round_trip(const TempDir& dir, int datatype, int bitpix) {
  const std::size_t count = 4 * 3 * 2;
  const auto values = sample_values<T>(count);
  for (int version : {1, 2}) {
    for (bool big_endian : {false, true}) {
      for (const char* extension : {".nii", ".nii.gz"}) {
        Header h;
        h.version = version;
        h.big_endian = big_endian;
        h.datatype = datatype;
        h.bitpix = bitpix;
        h.dim = {4, 4, 3, 2, 1, 1, 1, 1};  // a 4-D header holding one volume is fine
        h.pixdim = {1, 0.5, 0.75, 2.0, 1, 0, 0, 0};
        const fs::path path = dir / ("dt" + std::to_string(datatype) + "_v" +
                                     std::to_string(version) + (big_endian ? "_be" : "_le") +
                                     extension);
        write_nifti_file(path, h, encode(values, big_endian));
        INFO(path.string());
        const auto volume = read_nifti(path);
        CHECK(volume.datatype == datatype);
        CHECK(volume.nifti_version == version);
        CHECK(volume.data.shape() == revox::Shape5{1, 1, 2, 3, 4});
        CHECK(volume.geometry.spacing == std::array<double, 3>{0.5, 0.75, 2.0});
        for (std::size_t i = 0; i < count; ++i) {
          INFO("voxel " << i);
          CHECK(volume.data[static_cast<revox::index_t>(i)] ==
                static_cast<float>(static_cast<double>(values[i])));
        }
      }
    }
  }
}

}  // namespace

TEST_CASE("read_nifti reads every datatype in both byte orders, NIfTI-1 and -2, .nii and .nii.gz",
          "[io][nifti]") {
  TempDir dir;
  check_datatype_round_trip<std::uint8_t>(dir, 2, 8);
  check_datatype_round_trip<std::int8_t>(dir, 256, 8);
  check_datatype_round_trip<std::int16_t>(dir, 4, 16);
  check_datatype_round_trip<std::uint16_t>(dir, 512, 16);
  check_datatype_round_trip<std::int32_t>(dir, 8, 32);
  check_datatype_round_trip<float>(dir, 16, 32);
  check_datatype_round_trip<double>(dir, 64, 64);
}

TEST_CASE("read_nifti puts x fastest: voxel (x, y, z) at tensor (z, y, x)", "[io][nifti]") {
  TempDir dir;
  Header h;
  h.dim = {3, 5, 3, 2, 1, 1, 1, 1};
  std::vector<float> values(30);
  for (int z = 0; z < 2; ++z) {
    for (int y = 0; y < 3; ++y) {
      for (int x = 0; x < 5; ++x)
        values[static_cast<std::size_t>(x + 5 * (y + 3 * z))] =
            static_cast<float>(100 * z + 10 * y + x);
    }
  }
  write_nifti_file(dir / "order.nii", h, encode(values, false));
  const auto volume = read_nifti(dir / "order.nii");
  REQUIRE(volume.data.shape() == revox::Shape5{1, 1, 2, 3, 5});
  const auto view = volume.data.view();
  CHECK(view.at(0, 0, 1, 2, 4) == 124.0f);
  CHECK(view.at(0, 0, 0, 1, 3) == 13.0f);
  CHECK(view.at(0, 0, 1, 0, 0) == 100.0f);
}

TEST_CASE("read_nifti applies scl_slope and scl_inter only when the slope is non-zero",
          "[io][nifti]") {
  TempDir dir;
  const std::vector<std::int16_t> raw = {-4, 0, 1, 7, 100, -300};
  for (int version : {1, 2}) {
    for (bool big_endian : {false, true}) {
      Header h;
      h.version = version;
      h.big_endian = big_endian;
      h.datatype = 4;
      h.bitpix = 16;
      h.dim = {3, 3, 2, 1, 1, 1, 1, 1};
      h.scl_slope = 2.5;
      h.scl_inter = -3;
      const fs::path scaled =
          dir / ("scaled_v" + std::to_string(version) + (big_endian ? "be" : "le") + ".nii.gz");
      write_nifti_file(scaled, h, encode(raw, big_endian));
      const auto volume = read_nifti(scaled);
      for (std::size_t i = 0; i < raw.size(); ++i) {
        CHECK(volume.data[static_cast<revox::index_t>(i)] == static_cast<float>(raw[i] * 2.5 - 3));
      }
      h.scl_slope = 0;
      h.scl_inter = 5;  // ignored: a zero slope means "no scaling"
      const fs::path unscaled =
          dir / ("unscaled_v" + std::to_string(version) + (big_endian ? "be" : "le") + ".nii");
      write_nifti_file(unscaled, h, encode(raw, big_endian));
      const auto plain = read_nifti(unscaled);
      for (std::size_t i = 0; i < raw.size(); ++i) {
        CHECK(plain.data[static_cast<revox::index_t>(i)] == static_cast<float>(raw[i]));
      }
    }
  }
}

TEST_CASE("NIfTI geometry: sform before qform before pixdim, quaternion rule, matches()",
          "[io][nifti]") {
  TempDir dir;
  Header h;
  h.pixdim = {-1, 2, 3, 4, 0, 0, 0, 0};  // qfac = -1
  // 90 degrees about z: (b, c, d) = (0, 0, sin 45deg).
  h.quatern = {0, 0, std::sqrt(0.5)};
  h.qoffset = {10, 20, 30};
  h.srow = {{{-2, 0, 0, 90}, {0, 3, 0, -126}, {0, 0, 4, -72}}};
  const std::array<std::array<double, 4>, 4> qform_affine = {
      {{0, -3, 0, 10}, {2, 0, 0, 20}, {0, 0, -4, 30}, {0, 0, 0, 1}}};
  const std::array<std::array<double, 4>, 4> sform_affine = {
      {{-2, 0, 0, 90}, {0, 3, 0, -126}, {0, 0, 4, -72}, {0, 0, 0, 1}}};
  const std::array<std::array<double, 4>, 4> pixdim_affine = {
      {{2, 0, 0, 0}, {0, 3, 0, 0}, {0, 0, 4, 0}, {0, 0, 0, 1}}};
  auto require_affine = [](const NiftiGeometry& g,
                           const std::array<std::array<double, 4>, 4>& expected) {
    const auto m = g.affine();
    for (int r = 0; r < 4; ++r) {
      for (int c = 0; c < 4; ++c) {
        INFO("affine[" << r << "][" << c << "]");
        CHECK(m[r][c] == Approx(expected[r][c]).margin(1e-6));
      }
    }
  };
  struct Case {
    int qform_code, sform_code;
    const std::array<std::array<double, 4>, 4>* expected;
  };
  for (int version : {1, 2}) {
    for (const Case& c : {Case{1, 2, &sform_affine}, Case{0, 4, &sform_affine},
                          Case{1, 0, &qform_affine}, Case{0, 0, &pixdim_affine}}) {
      h.version = version;
      h.qform_code = c.qform_code;
      h.sform_code = c.sform_code;
      const fs::path path = dir / ("geometry_v" + std::to_string(version) + "_q" +
                                   std::to_string(c.qform_code) + "_s" +
                                   std::to_string(c.sform_code) + ".nii");
      write_nifti_file(path, h, float_data(24));
      INFO(path.string());
      const auto volume = read_nifti(path);
      CHECK(volume.geometry.qform_code == c.qform_code);
      CHECK(volume.geometry.sform_code == c.sform_code);
      CHECK(volume.geometry.qfac == -1.0);
      CHECK(volume.geometry.qoffset_y == 20.0);
      CHECK(volume.geometry.srow[1][3] == -126.0);
      require_affine(volume.geometry, *c.expected);
    }
  }

  const auto a = revox::io::default_geometry({1, 1, 1});
  require_affine(a, {{{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}, {0, 0, 0, 1}}});
  auto b = a;
  CHECK(a.matches(b));
  b.srow[0][3] = 0.01;
  CHECK_FALSE(a.matches(b));
  CHECK(a.matches(b, 0.1));
  b = a;
  b.spacing[2] = 1.01;  // spacing differs while the sform agrees
  CHECK_FALSE(a.matches(b));
  b = a;
  b.sform_code = 0;  // same transform from the qform
  CHECK(a.matches(b));
  b.qfac = -1;
  CHECK_FALSE(a.matches(b));
}

TEST_CASE("read_nifti opens exactly the named file, never a sibling", "[io][nifti]") {
  TempDir dir;
  Header h;
  write_nifti_file(dir / "a.nii.gz", h, float_data(24));
  write_nifti_file(dir / "b.nii", h, float_data(24));
  write_nifti_file(dir / "c", h, float_data(24));
  // nifti_clib would open a.nii.gz for a.nii, b.nii for b.nii.gz and b.nii for "b".
  require_rejected(dir / "a.nii", "file does not exist");
  require_rejected(dir / "b.nii.gz", "file does not exist");
  require_rejected(dir / "b", "file does not exist");
  require_rejected(dir / "missing" / "x.nii", "file does not exist");
  require_rejected(dir / "c", "unsupported file name");
  fs::create_directories(dir / "d.nii");
  require_rejected(dir / "d.nii", "not a regular file");
  CHECK(read_nifti(dir / "a.nii.gz").data.numel() == 24);
  CHECK(read_nifti(dir / "b.nii").data.numel() == 24);
}

TEST_CASE("read_nifti rejects empty files and truncated or malformed headers", "[io][nifti]") {
  TempDir dir;
  write_file(dir / "empty.nii", {});
  require_rejected(dir / "empty.nii", "file is empty (0 bytes)");
  write_file(dir / "empty.nii.gz", {});
  require_rejected(dir / "empty.nii.gz", "file is empty (0 bytes)");

  Header h;
  Bytes full = concat(header_bytes(h), float_data(24));
  write_file(dir / "short.nii", Bytes(full.begin(), full.begin() + 100));
  require_rejected(dir / "short.nii",
                   "truncated header: 100 bytes, a NIfTI header needs at least 348");
  write_file(dir / "short.nii.gz", gzip(Bytes(full.begin(), full.begin() + 347)));
  require_rejected(dir / "short.nii.gz", "truncated header: 347 bytes");
  Header h2;
  h2.version = 2;
  const Bytes full2 = concat(header_bytes(h2), float_data(24));
  write_file(dir / "short2.nii", Bytes(full2.begin(), full2.begin() + 400));
  require_rejected(dir / "short2.nii", "truncated header: 400 bytes, a NIfTI-2 header needs 540");

  Header bad = h;
  bad.sizeof_hdr = 349;
  write_nifti_file(dir / "sizeof.nii", bad, float_data(24));
  require_rejected(dir / "sizeof.nii", "bad sizeof_hdr 349 (expected 348 for NIfTI-1 or 540");
  write_nifti_file(dir / "sizeof.nii.gz", bad, float_data(24));
  require_rejected(dir / "sizeof.nii.gz", "bad sizeof_hdr 349");
  write_file(dir / "compressed.nii", gzip(full));
  require_rejected(dir / "compressed.nii",
                   "the data is gzip-compressed, but the name does not end in .gz");

  bad = h;
  bad.magic = std::string("n+X\0", 4);
  write_nifti_file(dir / "magic.nii", bad, float_data(24));
  require_rejected(dir / "magic.nii", "bad magic \"n+X\\x00\"");
  bad.magic = std::string("ni1\0", 4);
  write_nifti_file(dir / "pair.nii", bad, float_data(24));
  require_rejected(dir / "pair.nii", "magic \"ni1\" marks a .hdr/.img pair");
  bad = h2;
  bad.magic = std::string("n+2\0\r\n\x1a\x00", 8);
  write_nifti_file(dir / "magic2.nii.gz", bad, float_data(24));
  require_rejected(dir / "magic2.nii.gz", "bad magic");

  bad = h;
  bad.vox_offset = 100;
  write_nifti_file(dir / "offset.nii", bad, float_data(24));
  require_rejected(dir / "offset.nii", "bad vox_offset 100");
}

TEST_CASE("read_nifti rejects truncated data and truncated or corrupt gzip streams",
          "[io][nifti]") {
  TempDir dir;
  Header h;
  write_nifti_file(dir / "data.nii", h, float_data(24, false));
  const fs::path cut = dir / "cut.nii";
  {
    Bytes bytes = concat(header_bytes(h), float_data(24));
    bytes.resize(352 + 50);
    write_file(cut, bytes);
  }
  require_rejected(cut, "truncated data: header says 4x3x2 float32 (96 bytes from offset 352), "
                        "the file has 50");
  {
    Bytes bytes = concat(header_bytes(h), float_data(24));
    bytes.resize(352 + 95);
    write_file(dir / "cut.nii.gz", gzip(bytes));
  }
  require_rejected(dir / "cut.nii.gz", "truncated data: header says 4x3x2 float32 (96 bytes "
                                       "from offset 352), the file has 95");
  Header big = h;
  big.version = 2;
  big.dim = {3, 240, 240, 155, 1, 1, 1, 1};
  write_nifti_file(dir / "brats.nii.gz", big, Bytes(1000000, 0));
  require_rejected(dir / "brats.nii.gz", "truncated data: header says 240x240x155 float32 "
                                         "(35712000 bytes from offset 544), the file has 1000000");

  const Bytes good = gzip(concat(header_bytes(h), float_data(24)));
  write_file(dir / "good.nii.gz", good);
  REQUIRE(read_nifti(dir / "good.nii.gz").data.numel() == 24);
  // Cut inside the compressed data, and cut the 8-byte CRC/length trailer (which nifti_clib
  // 3.0.1 loads without complaint).
  write_file(dir / "half.nii.gz",
             Bytes(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(good.size() / 2)));
  require_rejected(dir / "half.nii.gz", "truncated gzip stream");
  write_file(dir / "notrailer.nii.gz", Bytes(good.begin(), good.end() - 8));
  require_rejected(dir / "notrailer.nii.gz", "truncated gzip stream");
  write_file(dir / "halftrailer.nii.gz", Bytes(good.begin(), good.end() - 3));
  require_rejected(dir / "halftrailer.nii.gz", "truncated gzip stream");
  Bytes crc = good;
  crc[crc.size() - 6] ^= 0x5a;  // inside the CRC32
  write_file(dir / "crc.nii.gz", crc);
  require_rejected(dir / "crc.nii.gz",
                   "the gzip CRC does not match the decompressed data: the file is corrupted");
  Bytes length = good;
  length[length.size() - 2] ^= 0x01;  // inside ISIZE
  write_file(dir / "length.nii.gz", length);
  require_rejected(dir / "length.nii.gz",
                   "the gzip length trailer does not match the decompressed size");
  Bytes body = good;
  for (std::size_t i = 12; i < 40; ++i) body[i] = static_cast<std::uint8_t>(0xff - body[i]);
  write_file(dir / "body.nii.gz", body);
  require_rejected(dir / "body.nii.gz", "corrupt gzip stream");
  write_file(dir / "garbage.nii.gz", concat(good, Bytes{'j', 'u', 'n', 'k'}));
  require_rejected(dir / "garbage.nii.gz", "data after the end of the compressed stream: 4 bytes");
  write_file(dir / "plain.nii.gz", concat(header_bytes(h), float_data(24)));
  require_rejected(dir / "plain.nii.gz", "not a gzip file");
  // Concatenated gzip members are one valid stream.
  Bytes raw = concat(header_bytes(h), float_data(24));
  const Bytes first(raw.begin(), raw.begin() + 200), second(raw.begin() + 200, raw.end());
  write_file(dir / "members.nii.gz", concat(gzip(first), gzip(second)));
  CHECK(read_nifti(dir / "members.nii.gz").data.numel() == 24);
}

TEST_CASE("read_nifti rejects bad dimensions before allocating anything", "[io][nifti]") {
  TempDir dir;
  for (std::int64_t ndim : {0, 1, 2, 8, -3}) {
    Header h;
    h.dim[0] = ndim;
    const fs::path path = dir / ("ndim" + std::to_string(ndim + 10) + ".nii");
    write_nifti_file(path, h, float_data(24));
    require_rejected(path, "dim[0] = " + std::to_string(ndim) + " is out of range");
  }
  for (int axis : {1, 2, 3}) {
    for (std::int64_t extent : {0, -5}) {
      Header h;
      h.dim[static_cast<std::size_t>(axis)] = extent;
      const fs::path path =
          dir / ("nonpositive" + std::to_string(axis) + std::to_string(-extent) + ".nii.gz");
      write_nifti_file(path, h, float_data(24));
      require_rejected(path, "non-positive dimension dim[" + std::to_string(axis) + "] = " +
                                 std::to_string(extent));
    }
  }
  for (int version : {1, 2}) {
    Header h;
    h.version = version;
    h.dim = {4, 4, 3, 2, 2, 1, 1, 1};
    const fs::path path = dir / ("volumes" + std::to_string(version) + ".nii");
    write_nifti_file(path, h, float_data(48));
    require_rejected(path, "holds more than one volume (dims 4x3x2x2; dim[4] = 2)");
    h.dim = {5, 4, 3, 2, 1, 3, 1, 1};
    write_nifti_file(path, h, float_data(72));
    require_rejected(path, "holds more than one volume");
  }
  // Absurd dimensions: rejected from the header, with no allocation (a 377-byte file).
  Header absurd;
  absurd.dim = {3, 30000, 30000, 30000, 1, 1, 1, 1};
  write_nifti_file(dir / "absurd.nii", absurd, Bytes(25, 0));
  require_rejected(dir / "absurd.nii", "absurd dimensions 30000x30000x30000");
  absurd.version = 2;
  absurd.dim = {3, std::int64_t{1} << 40, std::int64_t{1} << 40, std::int64_t{1} << 40, 1, 1, 1, 1};
  write_nifti_file(dir / "absurd2.nii.gz", absurd, Bytes(25, 0));
  require_rejected(dir / "absurd2.nii.gz", "absurd dimensions");
  // Large but plausible: rejected by the size check, before nifti_clib allocates 2 GB.
  Header large;
  large.dim = {3, 32000, 32000, 2, 1, 1, 1, 1};
  write_nifti_file(dir / "large.nii.gz", large, Bytes(25, 0));
  const auto before = revox::Tensor<float>::allocator().peak_bytes();
  // 16.4 GB with the float32 volume: over the default byte limit (at most 8 GiB) ...
  require_rejected(dir / "large.nii.gz", "header declares 32000x32000x2 float32 = 8192000000 "
                                         "bytes of voxel data, 16384000000 bytes in memory");
  // ... and, with the limit raised, still refused as truncated before any allocation.
  revox::io::NiftiReadOptions unlimited;
  unlimited.max_bytes = std::uint64_t{1} << 40;
  CHECK_THROWS_WITH(read_nifti(dir / "large.nii.gz", unlimited),
                    Catch::Contains("truncated data: header says 32000x32000x2 float32 "
                                    "(8192000000 bytes from offset 352), the file has 25"));
  CHECK(revox::Tensor<float>::allocator().peak_bytes() == before);
}

TEST_CASE("read_nifti rejects unsupported datatypes, bad pixdim and non-finite scaling",
          "[io][nifti]") {
  TempDir dir;
  struct Unsupported {
    int code;
    const char* text;
  };
  for (const auto& u : {Unsupported{32, "unsupported datatype 32 (complex64)"},
                        Unsupported{1024, "unsupported datatype 1024 (int64)"},
                        Unsupported{128, "unsupported datatype 128 (rgb24)"},
                        Unsupported{768, "unsupported datatype 768 (uint32)"},
                        Unsupported{1, "unsupported datatype 1 (binary)"},
                        Unsupported{0, "unsupported datatype 0 (unknown code)"},
                        Unsupported{9999, "unsupported datatype 9999 (unknown code)"}}) {
    Header h;
    h.datatype = u.code;
    const fs::path path = dir / ("datatype" + std::to_string(u.code) + ".nii");
    write_nifti_file(path, h, Bytes(24 * 16, 0));
    require_rejected(path, u.text);
  }
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  for (int version : {1, 2}) {
    for (int axis : {1, 2, 3}) {
      for (double value : {nan, inf, -inf, 0.0, -1.0}) {
        Header h;
        h.version = version;
        h.pixdim[static_cast<std::size_t>(axis)] = value;
        const fs::path path = dir / "pixdim.nii.gz";
        write_nifti_file(path, h, float_data(24));
        require_rejected(path, "pixdim[" + std::to_string(axis) + "] = ");
        CHECK_THAT(read_error(path), Catch::Contains("must be finite and positive"));
      }
    }
    for (auto [slope, inter] : {std::pair{nan, 0.0}, std::pair{inf, 0.0}, std::pair{1.0, nan},
                                std::pair{2.0, -inf}, std::pair{0.0, nan}}) {
      Header h;
      h.version = version;
      h.scl_slope = slope;
      h.scl_inter = inter;
      const fs::path path = dir / "scaling.nii";
      write_nifti_file(path, h, float_data(24));
      require_rejected(path, "non-finite scaling: scl_slope = ");
    }
  }
}

TEST_CASE("read_nifti rejects NaN and Inf voxels, naming the count and the first voxel",
          "[io][nifti]") {
  TempDir dir;
  for (int version : {1, 2}) {
    for (bool big_endian : {false, true}) {
      Header h;
      h.version = version;
      h.big_endian = big_endian;
      std::vector<float> values(24, 1.0f);
      values[1 + 4 * (2 + 3 * 0)] = std::numeric_limits<float>::quiet_NaN();  // (1, 2, 0)
      values[3 + 4 * (0 + 3 * 1)] = std::numeric_limits<float>::infinity();   // (3, 0, 1)
      values[23] = -std::numeric_limits<float>::infinity();
      const fs::path path = dir / "nan.nii.gz";
      write_nifti_file(path, h, encode(values, big_endian));
      require_rejected(path, "3 NaN or Inf voxels; the first at (x, y, z) = (1, 2, 0)");
    }
  }
  // float64 values that overflow float32, and scaling that overflows: both non-finite.
  Header h;
  h.datatype = 64;
  h.bitpix = 64;
  std::vector<double> values(24, 0.0);
  values[5] = 1e300;  // (1, 1, 0)
  write_nifti_file(dir / "overflow.nii", h, encode(values, false));
  require_rejected(dir / "overflow.nii", "1 NaN or Inf voxel; the first at (x, y, z) = (1, 1, 0)");
  h.datatype = 4;
  h.bitpix = 16;
  h.scl_slope = 1e38;
  std::vector<std::int16_t> ints(24, 0);
  ints[13] = 1000;  // (1, 0, 1)
  write_nifti_file(dir / "scaled.nii", h, encode(ints, false));
  require_rejected(dir / "scaled.nii", "1 NaN or Inf voxel (after scaling); the first at "
                                       "(x, y, z) = (1, 0, 1)");
}

TEST_CASE("write_nifti and write_nifti_labels round-trip with the reference geometry",
          "[io][nifti]") {
  TempDir dir;
  // A reference image with a rotated qform, a different sform and odd spacing.
  Header h;
  h.dim = {3, 5, 4, 3, 1, 1, 1, 1};
  h.pixdim = {-1, 0.9, 1.1, 2.5, 0, 0, 0, 0};
  h.qform_code = 1;
  h.sform_code = 2;
  h.quatern = {0.1, -0.2, 0.3};
  h.qoffset = {-90.5, 126.25, -72.125};
  h.srow = {{{-0.9, 0.01, 0, 90.3}, {0, 1.1, 0.02, -126.7}, {0.003, 0, 2.5, -72.1}}};
  write_nifti_file(dir / "reference.nii.gz", h, float_data(60));
  const auto reference = read_nifti(dir / "reference.nii.gz");

  for (const char* name : {"map.nii", "map.nii.gz"}) {
    revox::Tensor<float> map(revox::Shape5{1, 1, 3, 4, 5});
    for (revox::index_t i = 0; i < map.numel(); ++i) map[i] = static_cast<float>(i) * 0.37f - 5.0f;
    revox::io::write_nifti(dir / name, map, reference.geometry);
    const auto back = read_nifti(dir / name);
    CHECK(back.datatype == 16);
    CHECK(back.nifti_version == 1);
    REQUIRE(back.data.shape() == map.shape());
    CHECK(std::equal(map.data(), map.data() + map.numel(), back.data.data()));
    CHECK(back.geometry.matches(reference.geometry, 1e-9));
    CHECK(back.geometry.qform_code == 1);
    CHECK(back.geometry.sform_code == 2);
    CHECK(back.geometry.qfac == -1.0);
    CHECK(back.geometry.srow == reference.geometry.srow);
  }
  for (const char* name : {"seg.nii", "seg.nii.gz"}) {
    revox::Tensor<std::uint8_t> labels(revox::Shape5{1, 1, 3, 4, 5});
    const std::uint8_t label_set[] = {0, 1, 2, 4, 255};
    for (revox::index_t i = 0; i < labels.numel(); ++i) labels[i] = label_set[i % 5];
    revox::io::write_nifti_labels(dir / name, labels, reference.geometry);
    const auto back = read_nifti(dir / name);
    CHECK(back.datatype == 2);
    REQUIRE(back.data.shape() == labels.shape());
    for (revox::index_t i = 0; i < labels.numel(); ++i) {
      CHECK(back.data[i] == static_cast<float>(labels[i]));
    }
    CHECK(back.geometry.matches(reference.geometry, 1e-9));
  }
  // A geometry in double precision comes back rounded to float32, and a missing qform or
  // sform is not written.
  auto geometry = revox::io::default_geometry({1.0 / 3.0, 1, 1});
  geometry.sform_code = 0;
  geometry.srow[0][3] = 17;
  revox::Tensor<float> one = revox::Tensor<float>::full(revox::Shape5{1, 1, 1, 1, 2}, 0.5f);
  revox::io::write_nifti(dir / "rounded.nii", one, geometry);
  const auto back = read_nifti(dir / "rounded.nii");
  CHECK(back.geometry.spacing[0] == static_cast<double>(static_cast<float>(1.0 / 3.0)));
  CHECK(back.geometry.sform_code == 0);
  CHECK(back.geometry.srow[0][3] == 0.0);
  CHECK(entries(dir.path()) == std::vector<std::string>{"map.nii", "map.nii.gz", "reference.nii.gz",
                                                        "rounded.nii", "seg.nii", "seg.nii.gz"});
}

TEST_CASE("NIfTI writes are atomic: they replace a target whole and leave nothing on failure",
          "[io][nifti]") {
  TempDir dir;
  const auto geometry = revox::io::default_geometry({1, 1, 1});
  revox::Tensor<std::uint8_t> labels =
      revox::Tensor<std::uint8_t>::full(revox::Shape5{1, 1, 2, 2, 2}, 1);
  revox::io::write_nifti_labels(dir / "seg.nii.gz", labels, geometry);
  labels[3] = 4;
  revox::io::write_nifti_labels(dir / "seg.nii.gz", labels, geometry);  // replaces it
  CHECK(read_nifti(dir / "seg.nii.gz").data[3] == 4.0f);
  CHECK(entries(dir.path()) == std::vector<std::string>{"seg.nii.gz"});

  auto require_write_error = [&](auto&& write, const fs::path& target, const std::string& problem) {
    std::string message;
    try {
      write();
    } catch (const revox::Error& e) {
      message = e.what();
    }
    INFO("message: " << message);
    CHECK(message.find("NIfTI: cannot write '" + target.string() + "': ") == 0);
    CHECK(message.find(problem) != std::string::npos);
    for (const auto& name : entries(dir.path())) CHECK(name.rfind(".tmp", 0) == std::string::npos);
  };
  const fs::path nowhere = dir / "missing" / "seg.nii";
  require_write_error([&] { revox::io::write_nifti_labels(nowhere, labels, geometry); }, nowhere,
                      "cannot create a temporary file in '" + (dir / "missing").string() + "'");
  // The target is a directory: the write and the verification succeed, the rename fails,
  // and the temporary file is removed.
  fs::create_directories(dir / "taken.nii");
  require_write_error([&] { revox::io::write_nifti_labels(dir / "taken.nii", labels, geometry); },
                      dir / "taken.nii", "renaming");
  fs::remove(dir / "taken.nii");
  require_write_error([&] { revox::io::write_nifti_labels(dir / "seg.img", labels, geometry); },
                      dir / "seg.img", "unsupported file name");
  revox::Tensor<std::uint8_t> batch2 =
      revox::Tensor<std::uint8_t>::full(revox::Shape5{2, 1, 2, 2, 2}, 1);
  require_write_error([&] { revox::io::write_nifti_labels(dir / "b.nii", batch2, geometry); },
                      dir / "b.nii", "expected a volume of shape (1, 1, D, H, W)");
  revox::Tensor<float> map = revox::Tensor<float>::full(revox::Shape5{1, 1, 2, 2, 2}, 1.0f);
  map[5] = std::numeric_limits<float>::quiet_NaN();
  require_write_error([&] { revox::io::write_nifti(dir / "nan.nii", map, geometry); },
                      dir / "nan.nii", "1 NaN or Inf voxel(s) in the volume");
  map[5] = 0;
  auto bad_geometry = geometry;
  bad_geometry.spacing[1] = 0;
  require_write_error([&] { revox::io::write_nifti(dir / "g.nii", map, bad_geometry); },
                      dir / "g.nii", "spacing[1] = 0 must be finite and positive");
  bad_geometry = geometry;
  bad_geometry.srow[2][3] = std::numeric_limits<double>::infinity();
  require_write_error([&] { revox::io::write_nifti(dir / "g.nii", map, bad_geometry); },
                      dir / "g.nii", "non-finite");
  CHECK(entries(dir.path()) == std::vector<std::string>{"seg.nii.gz"});
}
