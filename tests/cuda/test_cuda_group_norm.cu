// GPU parity of GroupNorm (op and layer): each runs through its dispatcher on Cuda and on Cpu
// from the same inputs and the results are compared (tests/cuda/parity.cuh). Exits 77 (skipped)
// without a GPU. The same kernel bodies run on the CPU in
// tests/test_kernel_bodies_group_norm.cpp.
//
// Tolerances: mean and rstd 1e-10 (double sums in another order and with FMA); y, dx float
// 1e-5, double 1e-10; dgamma, dbeta the same, relative to the largest |value|.
#include <string>
#include <type_traits>

#include "cuda_check.cuh"
#include "parity.cuh"
#include "revox/core/random.hpp"
#include "revox/layers/group_norm.hpp"
#include "revox/ops/cuda/group_norm.cuh"

namespace {

template <class T>
void test_group_norm(const Cuda& dev) {
  revox::Rng rng(205);
  const std::string prefix = std::string("group_norm<") + type_name<T>() + ">: ";
  const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-10;
  struct Case {
    Shape5 shape;
    index_t groups;
    double offset;
  };
  // The last case has 4 chunks per plane; the offset case checks the shifted statistics.
  for (const Case test : {Case{{2, 6, 5, 7, 9}, 3, 0.0}, Case{{2, 3, 5, 7, 9}, 1, 0.0},
                          Case{{2, 6, 5, 7, 9}, 2, 1000.0}, Case{{2, 6, 20, 24, 28}, 3, 0.0}}) {
    const Shape5 shape = test.shape;
    const double spread = test.offset == 0.0 ? 1.0 : 0.01;
    const Tensor<T> x = random_tensor<T>(shape, rng, test.offset - spread, test.offset + spread);
    const Tensor<T> dy = random_tensor<T>(shape, rng);
    revox::GroupNorm<T> layer_cpu(test.groups, shape.c);
    revox::GroupNorm<T> layer_dev(test.groups, shape.c);
    revox::Parameters<T> params_cpu(layer_cpu);
    revox::Parameters<T, Cuda> params_dev(layer_dev);
    revox::fill_uniform(layer_cpu.weight().value, shape.c, rng, 0.5, 1.5);
    revox::fill_uniform(layer_cpu.bias().value, shape.c, rng, -0.5, 0.5);
    revox::fill_uniform(layer_cpu.weight().grad, shape.c, rng, -0.5, 0.5);  // ACCUMULATED onto
    REVOX_CUDA_CHECK(cudaMemcpy(params_dev.values().data, params_cpu.values().data,
                                params_cpu.size() * sizeof(T), cudaMemcpyHostToDevice));
    REVOX_CUDA_CHECK(cudaMemcpy(params_dev.grads().data, params_cpu.grads().data,
                                params_cpu.size() * sizeof(T), cudaMemcpyHostToDevice));

    typename revox::GroupNorm<T>::template Saved<Cpu> saved_cpu;
    Tensor<T> y = nan_tensor<T>(shape);
    Tensor<T> dx = nan_tensor<T>(shape);
    layer_cpu.forward(Cpu{}, x.cview(), y.view(), &saved_cpu);
    const Tensor<double> mean = saved_cpu.mean.clone();
    const Tensor<double> rstd = saved_cpu.rstd.clone();
    layer_cpu.backward(Cpu{}, saved_cpu, dy.cview(), dx.view());

    const auto x_dev = revox::to_device(x);
    const auto dy_dev = revox::to_device(dy);
    typename revox::GroupNorm<T>::template Saved<Cuda> saved_dev;
    auto y_dev = device_prefilled<T>(dev, shape);
    auto dx_dev = device_prefilled<T>(dev, shape);
    layer_dev.forward(dev, x_dev.cview(), y_dev.view(), &saved_dev);
    check_close(prefix + "mean", revox::to_host(saved_dev.mean), mean, 1e-10);
    check_close(prefix + "rstd", scaled_error(revox::to_host(saved_dev.rstd), rstd), 1e-10);
    layer_dev.backward(dev, saved_dev, dy_dev.cview(), dx_dev.view());
    check_close(prefix + "y", revox::to_host(y_dev), y, tol);
    check_close(prefix + "dx", scaled_error(revox::to_host(dx_dev), dx), tol);
    Tensor<T> grads(revox::flat_shape(params_cpu.size()));
    REVOX_CUDA_CHECK(cudaMemcpy(grads.data(), params_dev.grads().data, grads.bytes(),
                                cudaMemcpyDeviceToHost));
    check_close(
        prefix + "dweight, dbias",
        max_error_same_nonfinite(grads.data(), params_cpu.grads().data, grads.numel()), tol);

    // Inference: no saved statistics (they go to scratch).
    auto y_infer = device_prefilled<T>(dev, shape);
    layer_dev.forward(dev, x_dev.cview(), y_infer.view(), nullptr);
    check_close(prefix + "y without saved", revox::to_host(y_infer), y, tol);
  }
}

}  // namespace

int main() {
  return run_parity_test("test_cuda_group_norm", [](const Cuda& dev, auto t) {
    test_group_norm<decltype(t)>(dev);
  });
}
