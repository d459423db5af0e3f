// A complete small training loop with revox's public API: an MBConv block learns to map a
// random 3D volume to a fixed target (a denoising-style regression), with plain SGD over
// the flat parameter buffer. Prints the loss every few steps and the memory used.
//
//   build/examples/basics/revox_train_mbconv [steps]
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "revox/revox.hpp"

int main(int argc, char** argv) {
  using namespace revox;
  const int steps = argc > 1 ? std::atoi(argv[1]) : 60;
  if (steps <= 0) {
    std::fprintf(stderr, "usage: %s [steps > 0]\n", argv[0]);
    return 2;
  }

  MBConv<float> block(/*in_channels=*/8, /*out_channels=*/8, /*expand_ratio=*/2, /*num_groups=*/4);
  Parameters<float> params(block);
  Rng rng(2024);
  block.reset_parameters(rng);

  const Shape5 shape{1, 8, 16, 16, 16};
  Tensor<float> x(shape), target(shape), y(shape), dy(shape);
  fill_uniform(x.view(), rng, -1.0, 1.0);
  fill_uniform(target.view(), rng, -1.0, 1.0);
  const float learning_rate = 0.05f;

  double first_loss = 0.0, loss = 0.0;
  for (int step = 0; step < steps; ++step) {
    saved_t<MBConv<float>, Cpu> saved;
    block.forward(Cpu{}, x.cview(), y.view(), &saved);
    loss = 0.0;  // mean squared error
    for (index_t i = 0; i < y.numel(); ++i) {
      const float diff = y[i] - target[i];
      loss += double(diff) * diff;
      dy[i] = 2.0f * diff / float(y.numel());
    }
    loss /= double(y.numel());
    if (step == 0) first_loss = loss;
    params.zero_grad();
    block.backward(Cpu{}, saved, dy.cview(), TensorView<float>{});  // no input gradient needed
    for (index_t i = 0; i < params.size(); ++i) {
      params.values()[i] -= learning_rate * params.grads()[i];
    }
    if (step % 10 == 0 || step == steps - 1) {
      std::printf("step %3d  loss %.5f  peak CPU memory %.2f MiB\n", step, loss,
                  double(cpu_allocator().peak_bytes()) / (1 << 20));
    }
  }
  std::printf("%lld parameters; loss %.5f -> %.5f\n", static_cast<long long>(params.count()),
              first_loss, loss);
  return std::isfinite(loss) && loss < first_loss ? 0 : 1;
}
