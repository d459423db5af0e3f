// revox/optim/schedule.hpp — learning-rate schedules.
//
// MultiStepLR: the learning rate of torch.optim.lr_scheduler.MultiStepLR after `epoch`
// scheduler steps: base_lr, multiplied by gamma^k at each milestone reached (k = how often
// that milestone is listed), in increasing milestone order — the same chain of
// multiplications PyTorch performs, so the values agree to the last bit. Milestones may be
// given in any order and repeat. The trainer calls
//   optimizer.set_lr(schedule.lr_at_epoch(epoch));
// before each epoch. MultiStepLR::paper() is the paper's schedule: 1e-4, divided by 5 at
// epochs 250 and 400.
#pragma once

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "revox/core/error.hpp"

namespace revox::optim {

class MultiStepLR {
 public:
  MultiStepLR(double base_lr, std::vector<int> milestones, double gamma = 0.1)
      : base_lr_(base_lr), milestones_(std::move(milestones)), gamma_(gamma) {
    REVOX_CHECK(std::isfinite(base_lr) && base_lr >= 0.0,
                "MultiStepLR: base_lr must be finite and non-negative, got ", base_lr);
    REVOX_CHECK(std::isfinite(gamma) && gamma > 0.0,
                "MultiStepLR: gamma must be finite and positive, got ", gamma);
    for (int m : milestones_) {
      REVOX_CHECK(m >= 0, "MultiStepLR: milestones must be non-negative epochs, got ", m);
    }
    std::sort(milestones_.begin(), milestones_.end());
  }

  // The paper's schedule (Pendse, Thangarasa et al., arXiv 2104.09648, "Training"): 1e-4,
  // x0.2 at epochs 250 and 400.
  static MultiStepLR paper() { return MultiStepLR(1e-4, {250, 400}, 0.2); }

  double lr_at_epoch(int epoch) const {
    REVOX_CHECK(epoch >= 0, "MultiStepLR: epoch must be non-negative, got ", epoch);
    double lr = base_lr_;
    for (std::size_t i = 0; i < milestones_.size() && milestones_[i] <= epoch;) {
      std::size_t j = i;
      while (j < milestones_.size() && milestones_[j] == milestones_[i]) ++j;
      lr = lr * std::pow(gamma_, static_cast<double>(j - i));
      i = j;
    }
    return lr;
  }

  double base_lr() const { return base_lr_; }
  // Sorted.
  const std::vector<int>& milestones() const { return milestones_; }
  double gamma() const { return gamma_; }

 private:
  double base_lr_;
  std::vector<int> milestones_;
  double gamma_;
};

}  // namespace revox::optim
