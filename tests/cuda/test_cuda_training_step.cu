// A whole training step of the reversible U-Net on the GPU against the CPU: the same weights,
// input and targets on both devices; forward logits, the BCE + Dice loss, every parameter
// gradient and the weights after three SGD-with-momentum steps are compared. Covers the
// MBConv U-Net (depthwise, pointwise, GroupNorm, ReLU6, reversible coupling and
// reconstruction, max pool, trilinear upsampling, additive skips) and the Baseline's standard
// blocks (dense 3x3x3 convolutions). Device buffers start from values other than the CPU's,
// so nothing passes by being left unwritten. Also prints the GPU's peak memory of the
// reversible step against the stored-activation twin, and checks MBConv's lean memory mode on
// the GPU against the stored mode on the CPU.
//
// Tolerances (float32; the GPU sums in other orders than the CPU, cuBLAS vs revox CPU GEMMs):
// logits and weights max |gpu - cpu| <= 2e-4 * max |cpu| + 1e-6; loss relative 1e-4;
// each parameter's gradient relative L2 error <= 2e-3.
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "cuda_check.cuh"
#include "revox/core/cuda.hpp"
#include "revox/core/random.hpp"
#include "revox/losses/dice.hpp"
#include "revox/models/unet.hpp"
#include "revox/revox.cuh"
#include "revox/optim/sgd.hpp"

namespace {

using revox::Cpu;
using revox::Cuda;
using revox::index_t;
using revox::Shape5;
using revox::Tensor;
using revox::TensorView;

template <class T>
std::vector<T> host_copy(const Cuda& dev, TensorView<const T> device) {
  std::vector<T> out(static_cast<std::size_t>(device.numel()));
  revox::DeviceTraits<Cuda>::copy_to_host(dev, out.data(), device.data, out.size() * sizeof(T));
  return out;
}

double max_abs(const float* a, index_t n) {
  double m = 0.0;
  for (index_t i = 0; i < n; ++i) m = std::max(m, std::abs(static_cast<double>(a[i])));
  return m;
}

// max |a - b| <= rel * max |b| + abs_tol, printed with its name.
bool close_max(const char* what, const std::vector<float>& gpu, const float* cpu, index_t n,
               double rel) {
  double worst = 0.0;
  bool finite = true;
  for (index_t i = 0; i < n; ++i) {
    finite = finite && std::isfinite(gpu[static_cast<std::size_t>(i)]);
    worst = std::max(worst, std::abs(static_cast<double>(gpu[static_cast<std::size_t>(i)]) -
                                     static_cast<double>(cpu[i])));
  }
  const double bound = rel * max_abs(cpu, n) + 1e-6;
  std::printf("  %-28s max|gpu-cpu| = %.3e (bound %.3e)\n", what, worst, bound);
  return finite && worst <= bound;
}

struct StepResult {
  bool ok = true;
};

bool run_config(const char* label, revox::UNetConfig config, const Cuda& dev) {
  std::printf("%s: widths", label);
  for (auto w : config.widths) std::printf(" %lld", static_cast<long long>(w));
  std::printf(", block %s, reversible %d\n", config.block.c_str(), config.reversible ? 1 : 0);
  bool ok = true;
  const Shape5 in_shape{1, config.in_channels, 16, 24, 32};

  revox::UNet<float> cpu_net(config);
  revox::UNet<float> gpu_net(config);
  revox::Parameters<float, Cpu> cpu_params(cpu_net);
  revox::Parameters<float, Cuda> gpu_params(gpu_net);
  revox::Rng rng(2024);
  cpu_net.reset_parameters(rng);
  revox::DeviceTraits<Cuda>::copy_from_host(
      dev, gpu_params.values().data, cpu_params.values().data,
      static_cast<std::size_t>(cpu_params.size()) * sizeof(float));

  Tensor<float> x(in_shape);
  for (index_t i = 0; i < x.numel(); ++i) x[i] = static_cast<float>(rng.normal());
  const Shape5 out_shape = cpu_net.output_shape(in_shape);
  Tensor<float> targets(out_shape);
  for (index_t i = 0; i < targets.numel(); ++i) {
    targets[i] = rng.uniform01() < 0.3 ? 1.0f : 0.0f;
  }
  Tensor<float, Cuda> gx = revox::to_device(dev, x);
  Tensor<float, Cuda> gtargets = revox::to_device(dev, targets);

  revox::optim::SGDOptions sgd_options;
  sgd_options.lr = 0.05;
  sgd_options.momentum = 0.9;
  revox::optim::SGD<float, Cpu> cpu_sgd(cpu_params, sgd_options);
  revox::optim::SGD<float, Cuda> gpu_sgd(dev, gpu_params, sgd_options);

  for (int step = 0; step < 3; ++step) {
    Tensor<float> logits(out_shape);
    Tensor<float> dlogits(out_shape);
    revox::UNet<float>::Saved<Cpu> cpu_saved;
    cpu_net.forward(Cpu{}, x.cview(), logits.view(), &cpu_saved);
    const double cpu_loss = revox::losses::bce_dice_loss(Cpu{}, logits.cview(),
                                                         targets.cview(), dlogits.view());
    cpu_params.zero_grad();
    cpu_net.backward(Cpu{}, cpu_saved, dlogits.cview(), TensorView<float>{});

    Tensor<float, Cuda> glogits(out_shape);
    Tensor<float, Cuda> gdlogits(out_shape);
    revox::ops::fill(dev, glogits.view(), 1234.5f);
    revox::ops::fill(dev, gdlogits.view(), -777.0f);
    revox::ops::fill(dev, gpu_params.grads(), 55.0f);  // zero_grad must clear it
    revox::UNet<float>::Saved<Cuda> gpu_saved;
    gpu_net.forward(dev, gx.cview(), glogits.view(), &gpu_saved);
    const double gpu_loss = revox::losses::bce_dice_loss(dev, glogits.cview(),
                                                         gtargets.cview(), gdlogits.view());
    gpu_params.zero_grad();
    gpu_net.backward(dev, gpu_saved, gdlogits.cview(), TensorView<float>{});
    REVOX_CUDA_CHECK(cudaStreamSynchronize(dev.stream));

    std::printf(" step %d: loss cpu %.7f gpu %.7f\n", step, cpu_loss, gpu_loss);
    const bool loss_ok = std::abs(gpu_loss - cpu_loss) <= 1e-4 * std::abs(cpu_loss) + 1e-7;
    CUDA_TEST_CHECK(loss_ok);
    ok = ok && loss_ok;
    const bool logits_ok = close_max("logits", host_copy(dev, glogits.cview()), logits.data(),
                                     logits.numel(), 2e-4);
    CUDA_TEST_CHECK(logits_ok);
    ok = ok && logits_ok;

    // Every parameter's gradient, relative L2.
    const std::vector<float> ggrads = host_copy(dev, TensorView<const float>(gpu_params.grads()));
    const float* cgrads = cpu_params.grads().data;
    double worst = 0.0;
    std::string worst_name;
    for (const auto& entry : cpu_params.entries()) {
      double diff = 0.0, norm = 0.0;
      for (index_t i = 0; i < entry.shape.numel(); ++i) {
        const double c = cgrads[entry.offset + i];
        const double g = ggrads[static_cast<std::size_t>(entry.offset + i)];
        diff += (g - c) * (g - c);
        norm += c * c;
      }
      const double rel = std::sqrt(diff) / (std::sqrt(norm) + 1e-12);
      if (!(rel <= worst)) {
        worst = rel;
        worst_name = entry.name;
      }
    }
    std::printf("  %-28s worst relative L2 = %.3e (%s; bound 2e-3)\n", "parameter gradients",
                worst, worst_name.c_str());
    CUDA_TEST_CHECK(worst <= 2e-3);
    ok = ok && worst <= 2e-3;

    cpu_sgd.step();
    gpu_sgd.step();
    const bool weights_ok =
        close_max("weights after the step", host_copy(dev, TensorView<const float>(gpu_params.values())),
                  cpu_params.values().data, cpu_params.size(), 2e-4);
    CUDA_TEST_CHECK(weights_ok);
    ok = ok && weights_ok;
  }
  return ok;
}

// MBConv's lean memory mode on the GPU against the stored mode on the CPU: the same weights,
// input and output gradient; y, dx and every parameter gradient compared (bounds as above).
bool check_lean_mbconv(const Cuda& dev, index_t in, index_t out, index_t expand, index_t groups,
                       Shape5 shape) {
  std::printf("lean MBConv(%lld -> %lld, e=%lld, groups=%lld) on the GPU vs stored on the CPU\n",
              static_cast<long long>(in), static_cast<long long>(out),
              static_cast<long long>(expand), static_cast<long long>(groups));
  revox::MBConv<float> cpu_block(in, out, expand, groups);
  revox::MBConv<float> gpu_block(in, out, expand, groups, true);
  revox::Parameters<float, Cpu> cpu_params(cpu_block);
  revox::Parameters<float, Cuda> gpu_params(gpu_block);
  revox::Rng rng(77);
  cpu_block.reset_parameters(rng);
  revox::fill_uniform(cpu_params.values(), rng, 0.2, 1.2);
  revox::DeviceTraits<Cuda>::copy_from_host(
      dev, gpu_params.values().data, cpu_params.values().data,
      static_cast<std::size_t>(cpu_params.size()) * sizeof(float));
  Tensor<float> x(shape);
  revox::fill_uniform(x.view(), rng, -1.0, 1.0);
  const Shape5 out_shape = cpu_block.output_shape(shape);
  Tensor<float> dy(out_shape);
  revox::fill_uniform(dy.view(), rng, -1.0, 1.0);
  Tensor<float> y(out_shape), dx(shape);
  {
    revox::saved_t<revox::MBConv<float>, Cpu> saved;
    cpu_block.forward(Cpu{}, x.cview(), y.view(), &saved);
    cpu_params.zero_grad();
    cpu_block.backward(Cpu{}, saved, dy.cview(), dx.view());
  }
  Tensor<float, Cuda> gx = revox::to_device(dev, x);
  Tensor<float, Cuda> gdy = revox::to_device(dev, dy);
  Tensor<float, Cuda> gy(out_shape), gdx(shape);
  revox::ops::fill(dev, gy.view(), 1234.5f);
  revox::ops::fill(dev, gdx.view(), -777.0f);
  gpu_params.zero_grad();
  {
    revox::saved_t<revox::MBConv<float>, Cuda> saved;
    gpu_block.forward(dev, gx.cview(), gy.view(), &saved);
    gpu_block.backward(dev, saved, gdy.cview(), gdx.view());
  }
  REVOX_CUDA_CHECK(cudaStreamSynchronize(dev.stream));
  bool ok = close_max("y", host_copy(dev, gy.cview()), y.data(), y.numel(), 2e-4);
  ok = close_max("dx", host_copy(dev, gdx.cview()), dx.data(), dx.numel(), 2e-4) && ok;
  const std::vector<float> ggrads = host_copy(dev, TensorView<const float>(gpu_params.grads()));
  const float* cgrads = cpu_params.grads().data;
  double worst = 0.0;
  for (const auto& entry : cpu_params.entries()) {
    double diff = 0.0, norm = 0.0;
    for (index_t i = 0; i < entry.shape.numel(); ++i) {
      const double c = cgrads[entry.offset + i];
      const double g = ggrads[static_cast<std::size_t>(entry.offset + i)];
      diff += (g - c) * (g - c);
      norm += c * c;
    }
    const double rel = std::sqrt(diff) / (std::sqrt(norm) + 1e-12);
    if (!(rel <= worst)) worst = rel;
  }
  std::printf("  %-28s worst relative L2 = %.3e (bound 2e-3)\n", "parameter gradients", worst);
  return ok && worst <= 2e-3;
}

// Peak GPU memory of one training step, reversible against stored activations.
void report_peak_memory(const Cuda& dev) {
  for (bool reversible : {true, false}) {
    revox::UNetConfig config = revox::unet_preset("small");
    config.reversible = reversible;
    revox::UNet<float> net(config);
    revox::Parameters<float, Cuda> params(net);
    const Shape5 in_shape{1, config.in_channels, 64, 64, 64};
    Tensor<float, Cuda> x = Tensor<float, Cuda>::zeros(in_shape);
    auto& allocator = revox::cuda_allocator();
    REVOX_CUDA_CHECK(cudaStreamSynchronize(dev.stream));
    allocator.reset_peak();
    const index_t base = static_cast<index_t>(allocator.current_bytes());
    Tensor<float, Cuda> logits(net.output_shape(in_shape));
    revox::UNet<float>::Saved<Cuda> saved;
    net.forward(dev, x.cview(), logits.view(), &saved);
    net.backward(dev, saved, logits.cview(), TensorView<float>{});
    REVOX_CUDA_CHECK(cudaStreamSynchronize(dev.stream));
    std::printf("peak GPU memory of a small-preset step at 64^3, reversible %d: %.1f MiB above "
                "weights and input\n",
                reversible ? 1 : 0,
                static_cast<double>(static_cast<index_t>(allocator.peak_bytes()) - base) /
                    (1024.0 * 1024.0));
  }
}

}  // namespace

int main() {
  revox_cuda_test::require_gpu("test_cuda_training_step");
  try {
    revox::CudaContext context(0);
    const Cuda dev = context.device();

    revox::UNetConfig mbconv = revox::unet_preset("small");
    mbconv.widths = {8, 16, 32};
    mbconv.num_groups = 2;
    CUDA_TEST_CHECK(run_config("reversible MBConv U-Net", mbconv, dev));

    revox::UNetConfig standard = mbconv;
    standard.block = "standard";
    CUDA_TEST_CHECK(run_config("reversible standard-block U-Net", standard, dev));

    revox::UNetConfig stored = mbconv;
    stored.reversible = false;
    CUDA_TEST_CHECK(run_config("stored-activation MBConv U-Net", stored, dev));

    CUDA_TEST_CHECK(check_lean_mbconv(dev, 4, 6, 2, 2, Shape5{2, 4, 5, 6, 7}));
    CUDA_TEST_CHECK(check_lean_mbconv(dev, 6, 6, 1, 3, Shape5{1, 6, 9, 10, 11}));
    CUDA_TEST_CHECK(check_lean_mbconv(dev, 15, 15, 2, 5, Shape5{1, 15, 16, 16, 16}));

    report_peak_memory(dev);
  } catch (const revox::Error& error) {
    std::printf("FAILED with revox::Error: %s\n", error.what());
    return 1;
  }
  return revox_cuda_test::finish("test_cuda_training_step");
}
