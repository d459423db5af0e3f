// Must NOT compile: forward takes a deduced `Saved<Dev>* saved`, which cannot take the plain
// nullptr that containers pass. The layer contract check has to reject it with a sentence
// that shows the signature that works (tests/CMakeLists.txt checks the message), instead of
// an error deep inside a container.
#include "revox/layers/activations.hpp"
#include "revox/layers/sequential.hpp"

template <class T>
struct DeducedSaved {
  using value_type = T;
  template <class Dev>
  struct Saved {};
  revox::Shape5 output_shape(revox::Shape5 in) const { return in; }
  template <class Fn>
  void visit_params(Fn&&) {}
  void reset_parameters(revox::Rng&) {}
  template <class Dev>
  void forward(const Dev&, revox::TensorView<const T>, revox::TensorView<T>,
               Saved<Dev>* /*saved*/) const {}
  template <class Dev>
  void backward(const Dev&, Saved<Dev>&, revox::TensorView<const T>, revox::TensorView<T>) {}
};

int main() {
  revox::Sequential<DeducedSaved<float>, revox::ReLU<float>> net(DeducedSaved<float>{},
                                                                 revox::ReLU<float>{});
  return static_cast<int>(net.output_shape(revox::Shape5{1, 2, 1, 1, 1}).c);
}
