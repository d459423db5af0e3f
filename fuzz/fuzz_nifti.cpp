// fuzz/fuzz_nifti.cpp — libFuzzer target for revox::io::read_nifti (include/revox/io/nifti.hpp).
//
// Input: the bytes of a file. Input that starts with the gzip signature 1f 8b is read as
// x.nii.gz. Any other input is read twice, as x.nii and gzip-compressed as x.nii.gz: both
// must fail with revox::Error, or both must give the same volume (a differential check of
// the plain and the zlib paths). A successful read must return a (1, 1, nz, ny, nx) volume of
// finite voxels. Anything else is a finding (see fuzz_common.hpp).
#include <zlib.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "fuzz_common.hpp"
#include "revox/io/nifti.hpp"

namespace {

std::vector<std::uint8_t> gzip(const std::uint8_t* data, std::size_t size) {
  z_stream s{};
  if (deflateInit2(&s, 1, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    revox_fuzz::finding("harness: deflateInit2 failed");
  }
  std::vector<std::uint8_t> out(deflateBound(&s, static_cast<uLong>(size)) + 64);
  s.next_in = const_cast<Bytef*>(data);
  s.avail_in = static_cast<uInt>(size);
  s.next_out = out.data();
  s.avail_out = static_cast<uInt>(out.size());
  if (deflate(&s, Z_FINISH) != Z_STREAM_END) revox_fuzz::finding("harness: deflate failed");
  out.resize(out.size() - s.avail_out);
  deflateEnd(&s);
  return out;
}

std::optional<revox::io::NiftiVolume> read(const std::filesystem::path& path) {
  std::optional<revox::io::NiftiVolume> result;
  revox_fuzz::expect_only_revox_errors("read_nifti", [&] {
    result = revox::io::read_nifti(path);
  });
  if (result) {
    const auto& v = *result;
    const auto shape = v.data.shape();
    if (shape.n != 1 || shape.c != 1 || shape.d < 1 || shape.h < 1 || shape.w < 1) {
      revox_fuzz::finding("read_nifti returned a bad shape");
    }
    for (std::int64_t i = 0; i < v.data.numel(); ++i) {
      if (!std::isfinite(v.data.data()[i])) revox_fuzz::finding("read_nifti returned NaN/Inf");
    }
    for (double s : v.geometry.spacing) {
      if (!(s > 0) || !std::isfinite(s)) revox_fuzz::finding("read_nifti returned bad spacing");
    }
  }
  return result;
}

bool same(const revox::io::NiftiVolume& a, const revox::io::NiftiVolume& b) {
  if (a.data.shape() != b.data.shape() || a.datatype != b.datatype ||
      a.nifti_version != b.nifti_version) {
    return false;
  }
  if (std::memcmp(a.data.data(), b.data.data(), sizeof(float) * a.data.numel()) != 0) {
    return false;
  }
  const auto& g = a.geometry;
  const auto& h = b.geometry;
  return std::memcmp(&g.spacing, &h.spacing, sizeof g.spacing) == 0 &&
         g.qform_code == h.qform_code && g.sform_code == h.sform_code &&
         std::memcmp(&g.srow, &h.srow, sizeof g.srow) == 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto& dir = revox_fuzz::scratch();
  const auto gz_path = dir / "x.nii.gz";
  if (size >= 2 && data[0] == 0x1f && data[1] == 0x8b) {
    revox_fuzz::write_file(gz_path, data, size);
    read(gz_path);
    return 0;
  }
  const auto plain_path = dir / "x.nii";
  revox_fuzz::write_file(plain_path, data, size);
  const auto compressed = gzip(data, size);
  revox_fuzz::write_file(gz_path, compressed.data(), compressed.size());
  const auto plain = read(plain_path);
  const auto zipped = read(gz_path);
  if (plain.has_value() != zipped.has_value()) {
    revox_fuzz::finding(std::string("x.nii and its gzip-compressed x.nii.gz read differently: ") +
                        (plain ? "only the .nii" : "only the .nii.gz") + " was read");
  }
  if (plain && !same(*plain, *zipped)) {
    revox_fuzz::finding("x.nii and its gzip-compressed x.nii.gz give different volumes");
  }
  return 0;
}
