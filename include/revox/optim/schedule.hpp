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
//
// CosineAnnealingLR (torch.optim.lr_scheduler.CosineAnnealingLR, its closed form):
//   lr(e) = eta_min + (base_lr - eta_min) * (1 + cos(pi * e / t_max)) / 2
// falling from base_lr at e = 0 to eta_min at e = t_max (past t_max the closed form rises
// again, as PyTorch's does; use t_max = the number of epochs).
//
// PolyLR (nnU-Net's poly schedule; torch's PolynomialLR with total_iters = max_epochs):
//   lr(e) = base_lr * (1 - min(e, max_epochs) / max_epochs)^exponent,   exponent 0.9 default
// reaching 0 at e = max_epochs and staying there.
//
// LinearWarmup<Schedule> runs a linear warm-up of `warmup_epochs` epochs and then the wrapped
// schedule, restarted at its own epoch 0 (torch's SequentialLR of LinearLR(start_factor,
// end_factor=1, total_iters=warmup_epochs) and the schedule, milestone warmup_epochs):
//   lr(e) = base_lr * (start_factor + (1 - start_factor) * e / warmup_epochs)  for e < warmup_epochs
//   lr(e) = schedule.lr_at_epoch(e - warmup_epochs)                             otherwise
// with base_lr = schedule.base_lr(). So give the wrapped schedule the epochs after the
// warm-up (CosineAnnealingLR(lr, epochs - warmup), PolyLR(lr, epochs - warmup)). It wraps
// any class with lr_at_epoch(int) and base_lr() (MultiStepLR too).
//
// The counter need not be an epoch: a trainer that steps the schedule once per optimizer step
// passes the step index and gives t_max, max_epochs and warmup_epochs in steps (revox-brats
// does this for "cosine" and "poly"). LinearWarmup with start_factor = 1 / (warmup + 1)
// rises from base_lr / (warmup + 1) at 0 by equal steps to base_lr at `warmup`:
//   lr(e) = base_lr * (e + 1) / (warmup + 1)   for e < warmup.
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

class CosineAnnealingLR {
 public:
  CosineAnnealingLR(double base_lr, int t_max, double eta_min = 0.0)
      : base_lr_(base_lr), t_max_(t_max), eta_min_(eta_min) {
    REVOX_CHECK(std::isfinite(base_lr) && base_lr >= 0.0,
                "CosineAnnealingLR: base_lr must be finite and non-negative, got ", base_lr);
    REVOX_CHECK(t_max > 0, "CosineAnnealingLR: t_max must be a positive number of epochs, got ",
                t_max);
    REVOX_CHECK(std::isfinite(eta_min) && eta_min >= 0.0,
                "CosineAnnealingLR: eta_min must be finite and non-negative, got ", eta_min);
  }

  double lr_at_epoch(int epoch) const {
    REVOX_CHECK(epoch >= 0, "CosineAnnealingLR: epoch must be non-negative, got ", epoch);
    const double pi = 3.14159265358979323846;
    return eta_min_ + (base_lr_ - eta_min_) *
                          (1.0 + std::cos(pi * static_cast<double>(epoch) /
                                          static_cast<double>(t_max_))) /
                          2.0;
  }

  double base_lr() const { return base_lr_; }
  int t_max() const { return t_max_; }
  double eta_min() const { return eta_min_; }

 private:
  double base_lr_;
  int t_max_;
  double eta_min_;
};

class PolyLR {
 public:
  PolyLR(double base_lr, int max_epochs, double exponent = 0.9)
      : base_lr_(base_lr), max_epochs_(max_epochs), exponent_(exponent) {
    REVOX_CHECK(std::isfinite(base_lr) && base_lr >= 0.0,
                "PolyLR: base_lr must be finite and non-negative, got ", base_lr);
    REVOX_CHECK(max_epochs > 0, "PolyLR: max_epochs must be positive, got ", max_epochs);
    REVOX_CHECK(std::isfinite(exponent) && exponent > 0.0,
                "PolyLR: exponent must be finite and positive, got ", exponent);
  }

  double lr_at_epoch(int epoch) const {
    REVOX_CHECK(epoch >= 0, "PolyLR: epoch must be non-negative, got ", epoch);
    const double progress =
        static_cast<double>(std::min(epoch, max_epochs_)) / static_cast<double>(max_epochs_);
    return base_lr_ * std::pow(1.0 - progress, exponent_);
  }

  double base_lr() const { return base_lr_; }
  int max_epochs() const { return max_epochs_; }
  double exponent() const { return exponent_; }

 private:
  double base_lr_;
  int max_epochs_;
  double exponent_;
};

template <class Schedule>
class LinearWarmup {
 public:
  LinearWarmup(Schedule schedule, int warmup_epochs, double start_factor = 1.0 / 3.0)
      : schedule_(std::move(schedule)), warmup_epochs_(warmup_epochs), start_factor_(start_factor) {
    REVOX_CHECK(warmup_epochs >= 0, "LinearWarmup: warmup_epochs must be non-negative, got ",
                warmup_epochs);
    REVOX_CHECK(std::isfinite(start_factor) && start_factor > 0.0 && start_factor <= 1.0,
                "LinearWarmup: start_factor must lie in (0, 1], got ", start_factor);
  }

  double lr_at_epoch(int epoch) const {
    REVOX_CHECK(epoch >= 0, "LinearWarmup: epoch must be non-negative, got ", epoch);
    if (epoch >= warmup_epochs_) return schedule_.lr_at_epoch(epoch - warmup_epochs_);
    const double factor = start_factor_ + (1.0 - start_factor_) * static_cast<double>(epoch) /
                                              static_cast<double>(warmup_epochs_);
    return schedule_.base_lr() * factor;
  }

  double base_lr() const { return schedule_.base_lr(); }
  int warmup_epochs() const { return warmup_epochs_; }
  double start_factor() const { return start_factor_; }
  const Schedule& schedule() const { return schedule_; }

 private:
  Schedule schedule_;
  int warmup_epochs_;
  double start_factor_;
};

}  // namespace revox::optim
