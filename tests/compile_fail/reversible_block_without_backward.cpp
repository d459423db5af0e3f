// Must NOT compile: F lacks backward(), so ReversibleBlock<F, G> has to stop with the layer
// contract's sentence. tests/CMakeLists.txt compiles this file and checks the message.
#include "revox/layers/activations.hpp"
#include "revox/layers/reversible.hpp"

template <class T>
struct ForwardOnly {
  using value_type = T;
  template <class Dev>
  struct Saved {};
  revox::Shape5 output_shape(revox::Shape5 in) const { return in; }
  template <class Fn>
  void visit_params(Fn&&) {}
  void reset_parameters(revox::Rng&) {}
  template <class Dev>
  void forward(const Dev&, revox::TensorView<const T>, revox::TensorView<T>,
               revox::nondeduced_t<Saved<Dev>>*) const {}
};

int main() {
  revox::ReversibleBlock<ForwardOnly<float>, revox::ReLU<float>> block(ForwardOnly<float>{},
                                                                       revox::ReLU<float>{});
  return static_cast<int>(block.output_shape(revox::Shape5{1, 2, 1, 1, 1}).c);
}
