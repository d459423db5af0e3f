// Builds against an installed revox: one training step of a small layer stack, checking
// that the loss decreases and that all memory is returned.
#include <cmath>
#include <cstdio>

#include "revox/revox.hpp"

int main() {
  using namespace revox;
  using Model = Sequential<Conv3d<float>, GroupNorm<float>, ReLU6<float>>;
  const Shape5 input_shape{1, 2, 6, 6, 6};
  Model model(Conv3d<float>(2, 4, 3), GroupNorm<float>(2, 4), ReLU6<float>());
  Parameters<float> params(model);
  Rng rng(7);
  model.reset_parameters(rng);

  Tensor<float> x(input_shape);
  fill_uniform(x.view(), rng, -1.0, 1.0);
  Tensor<float> y(model.output_shape(input_shape));
  auto loss_of = [&](const Tensor<float>& out) {
    double loss = 0.0;  // mean of y^2: pulls every output towards zero
    for (index_t i = 0; i < out.numel(); ++i) loss += double(out[i]) * out[i];
    return loss / double(out.numel());
  };

  saved_t<Model, Cpu> saved;
  model.forward(Cpu{}, x.cview(), y.view(), &saved);
  const double before = loss_of(y);
  Tensor<float> dy(y.shape());
  for (index_t i = 0; i < y.numel(); ++i) dy[i] = 2.0f * y[i] / float(y.numel());
  params.zero_grad();
  model.backward(Cpu{}, saved, dy.cview(), TensorView<float>{});
  for (index_t i = 0; i < params.size(); ++i) params.values()[i] -= 0.5f * params.grads()[i];
  model.forward(Cpu{}, x.cview(), y.view(), nullptr);
  const double after = loss_of(y);

  std::printf("revox consumer: %lld parameters, loss %.6f -> %.6f, CPU memory in use %zu bytes\n",
              static_cast<long long>(params.count()), before, after,
              cpu_allocator().current_bytes());
  if (!(after < before) || !std::isfinite(after)) {
    std::printf("FAILED: a gradient step did not reduce the loss\n");
    return 1;
  }
  return 0;
}
