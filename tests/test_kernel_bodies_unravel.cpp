// kernels::unravel, the flat-index decomposition every CUDA kernel body starts from, and the
// GroupNorm chunk bounds, past 2^31 elements (include/revox/ops/kernel_bodies/unravel.hpp).
#include <catch2/catch.hpp>

#include "revox/ops/kernel_bodies/group_norm.hpp"
#include "revox/ops/kernel_bodies/unravel.hpp"
#include "support/kernel_bodies.hpp"

TEST_CASE("emulated kernels: unravel inverts Shape5::offset past 2^31 elements",
          "[cuda][emulated][index]") {
  // 4 x 128 x 256 x 256 x 160 = 5.4e9 elements: offsets above 2^31 and 2^32.
  const Shape5 big{4, 128, 256, 256, 160};
  REQUIRE(big.numel() > (index_t{1} << 32) + 12345);
  const index_t probes[] = {0,
                            1,
                            big.w - 1,
                            big.w,
                            (index_t{1} << 31) - 1,
                            index_t{1} << 31,
                            (index_t{1} << 32) + 12345,
                            big.numel() / 2 + 7,
                            big.numel() - 1};
  for (const index_t i : probes) {
    const kernels::Coord5 u = kernels::unravel(big, i);
    INFO("flat index " << i);
    CHECK(u.n >= 0);
    CHECK(u.n < big.n);
    CHECK(u.c >= 0);
    CHECK(u.c < big.c);
    CHECK(u.d < big.d);
    CHECK(u.h < big.h);
    CHECK(u.w < big.w);
    CHECK(big.offset(u.n, u.c, u.d, u.h, u.w) == i);
  }
  const kernels::Coord5 last = kernels::unravel(big, big.numel() - 1);
  CHECK((last.n == big.n - 1 && last.c == big.c - 1 && last.d == big.d - 1 &&
         last.h == big.h - 1 && last.w == big.w - 1));

  // The group-norm chunk bounds of the last plane end at the last element.
  const auto dims = kernels::group_norm_dims(big, 8, kernels::kGroupNormChunk);
  const index_t last_plane = big.n * big.c - 1;
  CHECK(dims.slots() == big.n * big.c * ((big.spatial() + kernels::kGroupNormChunk - 1) /
                                         kernels::kGroupNormChunk));
  CHECK(dims.chunk_end(last_plane, dims.chunks - 1) == big.numel());
  CHECK(dims.chunk_begin(last_plane, 0) == big.numel() - big.spatial());

  // A small random check of every index of an odd shape.
  for (index_t i = 0; i < kOddShape.numel(); ++i) {
    const kernels::Coord5 u = kernels::unravel(kOddShape, i);
    if (kOddShape.offset(u.n, u.c, u.d, u.h, u.w) != i) FAIL("unravel fails at " << i);
  }
}
