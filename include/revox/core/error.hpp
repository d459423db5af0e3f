// revox/core/error.hpp — the error type and the check macros.
//
// Errors a user can cause (bad shapes, bad configuration, bad files) throw revox::Error
// with a message that names the thing, the expected and the actual value, e.g.
//   REVOX_CHECK(channels % num_groups == 0, "GroupNorm: channels (", channels,
//               ") must be divisible by num_groups (", num_groups, ")");
// Broken internal invariants (a bug in revox, not in the caller's input) use
// REVOX_ASSERT, which throws revox::InternalError naming the file and line.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace revox {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class InternalError : public Error {
 public:
  using Error::Error;
};

namespace detail {

template <class... Parts>
std::string concat(Parts&&... parts) {
  std::ostringstream out;
  (out << ... << std::forward<Parts>(parts));
  return out.str();
}

}  // namespace detail
}  // namespace revox

#define REVOX_CHECK(condition, ...)                                \
  do {                                                             \
    if (!(condition)) {                                            \
      throw ::revox::Error(::revox::detail::concat(__VA_ARGS__));  \
    }                                                              \
  } while (false)

// REVOX_CHECK_EQ(what, expected, actual): "what: expected E, got A".
#define REVOX_CHECK_EQ(what, expected, actual)                                    \
  do {                                                                            \
    const auto& revox_expected_ = (expected);                                     \
    const auto& revox_actual_ = (actual);                                         \
    if (!(revox_expected_ == revox_actual_)) {                                    \
      throw ::revox::Error(::revox::detail::concat(what, ": expected ",           \
                                                   revox_expected_, ", got ",     \
                                                   revox_actual_));               \
    }                                                                             \
  } while (false)

#define REVOX_ASSERT(condition)                                                   \
  do {                                                                            \
    if (!(condition)) {                                                           \
      throw ::revox::InternalError(::revox::detail::concat(                       \
          "revox internal error: ", #condition, " failed at ", __FILE__, ":",     \
          __LINE__));                                                             \
    }                                                                             \
  } while (false)
