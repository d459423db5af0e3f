#include <catch2/catch.hpp>

#include <string>

#include "revox/core/error.hpp"
#include "revox/core/shape.hpp"

namespace {
void check_groups(long channels, long num_groups) {
  REVOX_CHECK(channels % num_groups == 0, "GroupNorm: channels (", channels,
              ") must be divisible by num_groups (", num_groups, ")");
}
}  // namespace

TEST_CASE("REVOX_CHECK names the thing, the expected and the actual value", "[core][error]") {
  CHECK_NOTHROW(check_groups(32, 8));
  CHECK_THROWS_AS(check_groups(30, 8), revox::Error);
  CHECK_THROWS_WITH(check_groups(30, 8),
                    "GroupNorm: channels (30) must be divisible by num_groups (8)");
  CHECK_THROWS_WITH([] { REVOX_CHECK_EQ("Conv3d: input channels", 4, 3); }(),
                    "Conv3d: input channels: expected 4, got 3");
  CHECK_THROWS_WITH(
      [] { REVOX_CHECK_EQ("shape", (revox::Shape5{1, 2, 3, 4, 5}), (revox::Shape5{1, 2, 3, 4, 6})); }(),
                    "shape: expected (N=1, C=2, D=3, H=4, W=5), got (N=1, C=2, D=3, H=4, W=6)");
}

TEST_CASE("REVOX_ASSERT throws an InternalError naming the condition and the place",
          "[core][error]") {
  const int live = 3;
  CHECK_NOTHROW([&] { REVOX_ASSERT(live == 3); }());
  try {
    REVOX_ASSERT(live == 4);
    FAIL("REVOX_ASSERT did not throw");
  } catch (const revox::InternalError& error) {
    const std::string message = error.what();
    CHECK_THAT(message, Catch::Contains("live == 4") && Catch::Contains("test_error.cpp"));
  }
}
