// revox/core/profile.hpp — where a CPU step's time goes, op by op.
//
//   revox::OpProfile profile;              // collects while it is alive (one at a time)
//   net.forward(...); net.backward(...);   // every CPU op dispatcher adds its wall time
//   for (const auto& op : profile.ops()) std::cout << op.name << " " << op.seconds << "\n";
//
// Every dispatcher in revox/ops/*.hpp opens an OpTimer in its CPU branch, named as the op
// ("ops::conv3d_forward", "ops::group_norm_backward", ...). With no OpProfile alive a timer
// costs one load of a pointer and a branch. Only the outermost op is timed when one op calls
// another, so the times add up to the time spent inside ops. Timing is wall clock
// (std::chrono::steady_clock) on the thread that dispatches the op (revox dispatches from
// serial code; the kernels parallelise inside with OpenMP), so an op's time includes its whole
// parallel region. CUDA ops are asynchronous and are not timed here (use CUDA events).
// Not thread-safe: profile a step that dispatches from one thread, as revox's layers do.
#pragma once

#include <algorithm>
#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "revox/core/error.hpp"

namespace revox {

class OpProfile;

namespace detail {
inline OpProfile*& active_op_profile() {
  static OpProfile* profile = nullptr;
  return profile;
}
inline int& op_timer_depth() {
  static int depth = 0;
  return depth;
}
}  // namespace detail

class OpProfile {
 public:
  struct Op {
    std::string name;
    double seconds = 0.0;
    long long calls = 0;
  };

  OpProfile() {
    REVOX_CHECK(detail::active_op_profile() == nullptr,
                "OpProfile: another OpProfile is already collecting; one at a time");
    detail::active_op_profile() = this;
  }
  ~OpProfile() { detail::active_op_profile() = nullptr; }
  OpProfile(const OpProfile&) = delete;
  OpProfile& operator=(const OpProfile&) = delete;

  void add(const char* name, double seconds) {
    Sum& op = ops_[name];
    op.seconds += seconds;
    ++op.calls;
  }
  void clear() { ops_.clear(); }

  // Every op seen, the most time first.
  std::vector<Op> ops() const {
    std::vector<Op> out;
    for (const auto& [name, op] : ops_) out.push_back(Op{name, op.seconds, op.calls});
    std::sort(out.begin(), out.end(), [](const Op& a, const Op& b) {
      return a.seconds != b.seconds ? a.seconds > b.seconds : a.name < b.name;
    });
    return out;
  }
  double total_seconds() const {
    double total = 0.0;
    for (const auto& entry : ops_) total += entry.second.seconds;
    return total;
  }

 private:
  struct Sum {
    double seconds = 0.0;
    long long calls = 0;
  };
  std::map<std::string, Sum> ops_;
};

namespace detail {

// Opened by each op dispatcher's CPU branch (see the top of this file).
class OpTimer {
 public:
  explicit OpTimer(const char* name) {
    if (active_op_profile() == nullptr) return;
    if (op_timer_depth()++ != 0) return;  // an op inside an op: the outer one counts
    name_ = name;
    start_ = std::chrono::steady_clock::now();
  }
  ~OpTimer() {
    if (active_op_profile() == nullptr || op_timer_depth() == 0) return;
    --op_timer_depth();
    if (name_ == nullptr) return;
    const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start_;
    active_op_profile()->add(name_, elapsed.count());
  }
  OpTimer(const OpTimer&) = delete;
  OpTimer& operator=(const OpTimer&) = delete;

 private:
  const char* name_ = nullptr;
  std::chrono::steady_clock::time_point start_{};
};

}  // namespace detail
}  // namespace revox
