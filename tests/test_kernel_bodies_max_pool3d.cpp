// The CUDA kernel bodies of MaxPool3d (include/revox/ops/kernel_bodies/), run on the CPU with
// kernels::emulate_for_each and compared with the CPU kernels
// (include/revox/ops/cpu/max_pool3d.hpp). Outputs are pre-filled with NaN so an element a body
// never writes fails; shapes are odd (N=2, C=3 or 6, 5x7x9) so every index path is taken. The GPU
// runs the same bodies through cuda::for_each (the GPU part of tests/test_max_pool3d.cpp checks it
// on a GPU).
#include <catch2/catch.hpp>

#include "revox/ops/cpu/max_pool3d.hpp"
#include "revox/ops/kernel_bodies/max_pool3d.hpp"
#include "support/kernel_bodies.hpp"

TEMPLATE_TEST_CASE("emulated kernels: MaxPool3d forward and gather backward match the CPU",
                   "[cuda][emulated][max_pool3d]", float, double) {
  using T = TestType;
  revox::Rng rng(103);
  const Shape5 shapes[] = {kOddShape, {1, 2, 4, 6, 8}, {2, 1, 2, 3, 2}, {1, 1, 3, 2, 5}};
  for (const Shape5& in : shapes) {
    INFO("input " << in);
    Tensor<T> x = random_tensor<T>(in, rng);
    // Ties (quantised values) and NaN in some windows.
    for (index_t i = 0; i < x.numel(); i += 3) x[i] = std::round(x[i] * T(2)) / T(2);
    for (index_t i = 5; i < x.numel(); i += 41) x[i] = nan<T>();
    const Shape5 out{in.n, in.c, in.d / 2, in.h / 2, in.w / 2};

    Tensor<T> y_cpu = nan_tensor<T>(out);
    Tensor<std::uint8_t> argmax_cpu = Tensor<std::uint8_t>::full(out, 255);
    revox::ops::MaxPool3dKernels<revox::Cpu>::max_pool3d(revox::Cpu{}, x.cview(), y_cpu.view(), argmax_cpu.view());

    Tensor<T> y = nan_tensor<T>(out);
    Tensor<std::uint8_t> argmax = Tensor<std::uint8_t>::full(out, 255);
    kernels::emulate_for_each(out.numel(), kernels::MaxPool3dForward<T>{x.data(), in, y.data(),
                                                                        out, argmax.data()});
    CHECK(mismatches(y, y_cpu) == 0);
    CHECK(mismatches(argmax, argmax_cpu) == 0);

    // Without argmax (inference): y only.
    Tensor<T> y_only = nan_tensor<T>(out);
    kernels::emulate_for_each(out.numel(), kernels::MaxPool3dForward<T>{x.data(), in,
                                                                        y_only.data(), out,
                                                                        nullptr});
    CHECK(mismatches(y_only, y_cpu) == 0);

    const Tensor<T> dy = random_tensor<T>(out, rng);
    Tensor<T> dx_cpu = nan_tensor<T>(in);
    revox::ops::MaxPool3dKernels<revox::Cpu>::max_pool3d_backward(revox::Cpu{}, dy.cview(), argmax_cpu.cview(), dx_cpu.view());
    Tensor<T> dx = nan_tensor<T>(in);
    kernels::emulate_for_each(in.numel(), kernels::MaxPool3dBackward<T>{dy.data(), argmax.data(),
                                                                        out, dx.data(), in});
    CHECK(mismatches(dx, dx_cpu) == 0);
  }
}
