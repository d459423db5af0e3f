// Must NOT compile: an op called with a device that has no kernels for it (as a .cu file
// that forgot the op's .cuh would, or a new device type) stops at the op's primary template
// with the sentence that names the header to include (tests/CMakeLists.txt checks the
// message), not with an unresolved symbol at link time.
#include "revox/ops/activations.hpp"

struct OtherDevice {};

int main() {
  float x[2] = {-1.0f, 1.0f};
  float y[2] = {};
  const revox::Shape5 shape{1, 1, 1, 1, 2};
  revox::ops::relu(OtherDevice{}, revox::TensorView<const float>{x, shape},
                   revox::TensorView<float>{y, shape});
  return static_cast<int>(y[1]);
}
