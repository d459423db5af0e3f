// revox/losses/regression.hpp — element-wise regression losses: mean squared error and
// mean absolute error, as torch.nn.functional.mse_loss and l1_loss.
//
// prediction, target: any shape (N, C, D, H, W), the same for both. With r = prediction -
// target over all numel elements:
//
//   mse_loss:  Reduction::Mean (PyTorch's default): sum(r^2) / numel;   Reduction::Sum: sum(r^2)
//              d loss / d prediction = 2 r / numel  (Mean),  2 r  (Sum)
//   l1_loss:   Reduction::Mean: sum(|r|) / numel;   Reduction::Sum: sum(|r|)
//              d loss / d prediction = sign(r) / numel  (Mean),  sign(r)  (Sum),
//              with sign(0) = 0 (PyTorch's convention: the gradient at r = 0 is 0).
//
// Both return the loss as double and ASSIGN d loss / d prediction into `dprediction` (same
// shape as prediction; pass an empty view, e.g. TensorView<float>{}, to skip the gradient).
// The element type T comes from `dprediction`; prediction and target may be mutable or const
// views (tensor.view() or tensor.cview()). Sums run in double also for float data, in fixed
// chunks added in a fixed order, so the value does not depend on the number of threads.
//
// Preconditions, checked (revox::Error): prediction non-empty, target and dprediction of
// its shape, every prediction and target element finite (the message names the first bad
// element's position). CPU only.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include "revox/core/config.hpp"
#include "revox/core/error.hpp"
#include "revox/core/tensor.hpp"
#include "revox/losses/dice.hpp"

namespace revox {
namespace losses {

// How the element losses are combined: their mean (PyTorch's default) or their sum.
enum class Reduction { Mean, Sum };

namespace detail {

struct RegressionChunk {
  double sum = 0.0;
  index_t bad_prediction = -1;  // first non-finite element in the chunk, or -1
  index_t bad_target = -1;
};

// kind 0: squared error, 1: absolute error. Returns the loss and assigns its gradient.
template <class T>
double regression_loss(const char* loss, int kind, TensorView<const T> prediction,
                       TensorView<const T> target, TensorView<T> dprediction,
                       Reduction reduction) {
  REVOX_CHECK(prediction.data != nullptr && prediction.shape.valid(), loss,
              ": prediction must be a non-empty (N, C, D, H, W) tensor, got shape ",
              prediction.shape);
  REVOX_CHECK(target.data != nullptr, loss, ": target must not be empty");
  REVOX_CHECK(target.shape == prediction.shape, loss,
              ": target must have the shape of prediction ", prediction.shape, ", got ",
              target.shape);
  REVOX_CHECK(dprediction.empty() || dprediction.shape == prediction.shape, loss,
              ": dprediction must have the shape of prediction ", prediction.shape,
              " (or be empty), got ", dprediction.shape);
  REVOX_CHECK(reduction == Reduction::Mean || reduction == Reduction::Sum, loss,
              ": unknown reduction ", static_cast<int>(reduction));

  const index_t numel = prediction.numel();
  const index_t chunks = (numel + kLossChunk - 1) / kLossChunk;
  std::vector<RegressionChunk> slots(static_cast<std::size_t>(chunks));
  const T* p = prediction.data;
  const T* t = target.data;
#pragma omp parallel for schedule(static) if (numel > kLossChunk)
  for (index_t chunk = 0; chunk < chunks; ++chunk) {
    const index_t begin = chunk * kLossChunk;
    const index_t end = std::min(begin + kLossChunk, numel);
    RegressionChunk s;
    for (index_t i = begin; i < end; ++i) {
      const double pi = static_cast<double>(p[i]);
      const double ti = static_cast<double>(t[i]);
      if (!std::isfinite(pi) && s.bad_prediction < 0) s.bad_prediction = i;
      if (!std::isfinite(ti) && s.bad_target < 0) s.bad_target = i;
      const double r = pi - ti;
      s.sum += kind == 0 ? r * r : std::abs(r);
    }
    slots[static_cast<std::size_t>(chunk)] = s;
  }
  double sum = 0.0;
  index_t bad_prediction = -1;
  index_t bad_target = -1;
  for (const RegressionChunk& s : slots) {
    sum += s.sum;
    if (bad_prediction < 0) bad_prediction = s.bad_prediction;
    if (bad_target < 0) bad_target = s.bad_target;
  }
  REVOX_CHECK(bad_prediction < 0, loss, ": prediction must be finite, got ",
              bad_prediction < 0 ? 0.0 : static_cast<double>(p[bad_prediction]), " at ",
              position(prediction.shape, bad_prediction));
  REVOX_CHECK(bad_target < 0, loss, ": target must be finite, got ",
              bad_target < 0 ? 0.0 : static_cast<double>(t[bad_target]), " at ",
              position(prediction.shape, bad_target));

  const double scale = reduction == Reduction::Mean ? 1.0 / static_cast<double>(numel) : 1.0;
  if (!dprediction.empty()) {
    T* d = dprediction.data;
#pragma omp parallel for schedule(static) if (numel > kLossChunk)
    for (index_t i = 0; i < numel; ++i) {
      const double r = static_cast<double>(p[i]) - static_cast<double>(t[i]);
      const double g = kind == 0 ? 2.0 * r : static_cast<double>((r > 0.0) - (r < 0.0));
      d[i] = static_cast<T>(scale * g);
    }
  }
  return sum * scale;
}

}  // namespace detail

// Mean (or summed) squared error; see the header comment.
template <class T>
double mse_loss(nondeduced_t<TensorView<const T>> prediction,
                nondeduced_t<TensorView<const T>> target, TensorView<T> dprediction,
                Reduction reduction = Reduction::Mean) {
  return detail::regression_loss("mse_loss", 0, prediction, target, dprediction, reduction);
}

// Mean (or summed) absolute error; the gradient at prediction == target is 0.
template <class T>
double l1_loss(nondeduced_t<TensorView<const T>> prediction,
               nondeduced_t<TensorView<const T>> target, TensorView<T> dprediction,
               Reduction reduction = Reduction::Mean) {
  return detail::regression_loss("l1_loss", 1, prediction, target, dprediction, reduction);
}

}  // namespace losses
}  // namespace revox
