// Must stop with revox's message: a layer that loops over tensor data on the host, without
// skipping that on the planning device, is planned (tests/CMakeLists.txt checks the output).
#include <cstdio>

#include "revox/layers/pointwise_conv3d.hpp"
#include "revox/layers/sequential.hpp"
#include "revox/models/memory_planner.hpp"

template <class T>
struct HostNegate {
  using value_type = T;
  template <class Dev> struct Saved {};
  revox::Shape5 output_shape(revox::Shape5 in) const { return in; }
  template <class Fn> void visit_params(Fn&&) {}
  void reset_parameters(revox::Rng&) {}
  template <class Dev>
  void forward(const Dev&, revox::TensorView<const T> x, revox::TensorView<T> y,
               revox::nondeduced_t<Saved<Dev>>*) const {
    for (revox::index_t i = 0; i < x.numel(); ++i) y[i] = -x[i];  // no is_plan_v guard
  }
  template <class Dev>
  void backward(const Dev&, Saved<Dev>&, revox::TensorView<const T> dy, revox::TensorView<T> dx) {
    for (revox::index_t i = 0; i < dy.numel(); ++i) dx[i] = -dy[i];
  }
};

int main() {
  using Net = revox::Sequential<revox::PointwiseConv3d<float>, HostNegate<float>>;
  const Net net(revox::PointwiseConv3d<float>(2, 4), HostNegate<float>());
  const revox::MemoryPlan plan = revox::plan_layer_memory(net, revox::Shape5{1, 2, 8, 8, 8});
  std::printf("planned %zu bytes without touching tensor data: the guard did not trigger\n",
              plan.peak_bytes);
  return 0;
}
