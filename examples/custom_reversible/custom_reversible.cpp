// Bring your own F and G: a layer written here (ChannelGate, with its own forward and
// backward) composed with library layers, wrapped in ReversibleBlock, checked with the
// library's gradient checker, and trained for a few steps as a two-block reversible chain.
//
//   build/examples/custom_reversible/revox_custom_reversible [steps]
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "revox/core/parameters.hpp"
#include "revox/core/random.hpp"
#include "revox/core/tensor.hpp"
#include "revox/layers/group_norm.hpp"
#include "revox/layers/layer.hpp"
#include "revox/layers/mbconv.hpp"
#include "revox/layers/pointwise_conv3d.hpp"
#include "revox/layers/reversible.hpp"
#include "revox/layers/sequential.hpp"
#include "revox/testing/gradcheck.hpp"

// y = x * sigmoid(gain[c] * x + offset[c]): a per-channel gated activation (SiLU when
// gain = 1, offset = 0). Saves a view of x; dx assigned, parameter gradients accumulated.
template <class T>
class ChannelGate {
 public:
  using value_type = T;
  template <class Dev>
  struct Saved {
    revox::TensorView<const T> x;
  };

  explicit ChannelGate(revox::index_t channels)
      : channels_(channels), gain_({channels}), offset_({channels}) {
    REVOX_CHECK(channels > 0, "ChannelGate: channels must be positive, got ", channels);
  }

  revox::Shape5 output_shape(revox::Shape5 in) const {
    REVOX_CHECK_EQ("ChannelGate: input channels", channels_, in.c);
    return in;
  }
  template <class Fn>
  void visit_params(Fn&& fn) {
    fn(std::string("gain"), gain_);
    fn(std::string("offset"), offset_);
  }
  void reset_parameters(revox::Rng&) {
    for (revox::index_t c = 0; c < channels_; ++c) {
      gain_.value[c] = T(1);
      offset_.value[c] = T(0);
    }
  }

  template <class Dev>
  void forward(const Dev&, revox::TensorView<const T> x, revox::TensorView<T> y,
               revox::nondeduced_t<Saved<Dev>>* saved) const {
    static_assert(revox::is_cpu_v<Dev>, "ChannelGate: CPU only");
    revox::check_output_view("ChannelGate", output_shape(x.shape), y.shape);
    for (revox::index_t n = 0; n < x.shape.n; ++n) {
      for (revox::index_t c = 0; c < channels_; ++c) {
        const T* in = x.channel(n, c);
        T* out = y.channel(n, c);
        for (revox::index_t i = 0; i < x.shape.spatial(); ++i) {
          out[i] = in[i] * sigmoid(gain_.value[c] * in[i] + offset_.value[c]);
        }
      }
    }
    if (saved != nullptr) saved->x = x;  // only backward needs x
  }

  template <class Dev>
  void backward(const Dev&, Saved<Dev>& saved, revox::TensorView<const T> dy,
                revox::TensorView<T> dx) {
    const revox::TensorView<const T> x = saved.x;
    for (revox::index_t n = 0; n < x.shape.n; ++n) {
      for (revox::index_t c = 0; c < channels_; ++c) {
        const T* in = x.channel(n, c);
        const T* grad_out = dy.channel(n, c);
        for (revox::index_t i = 0; i < x.shape.spatial(); ++i) {
          const T s = sigmoid(gain_.value[c] * in[i] + offset_.value[c]);
          const T ds = grad_out[i] * in[i] * s * (1 - s);  // dL/d(gain * x + offset)
          if (!dx.empty()) dx.channel(n, c)[i] = grad_out[i] * s + ds * gain_.value[c];
          gain_.grad[c] += ds * in[i];  // accumulate, never assign
          offset_.grad[c] += ds;
        }
      }
    }
  }

 private:
  static T sigmoid(T v) { return T(1) / (T(1) + std::exp(-v)); }

  revox::index_t channels_;
  revox::Param<T> gain_;
  revox::Param<T> offset_;
};

// F: pointwise conv -> GroupNorm -> ChannelGate. G: the paper's MBConv (expand ratio 2).
template <class T>
using MyF = revox::Sequential<revox::PointwiseConv3d<T>, revox::GroupNorm<T>, ChannelGate<T>>;
template <class T>
using MyBlock = revox::ReversibleBlock<MyF<T>, revox::MBConv<T>>;

template <class T>
MyBlock<T> make_block(revox::index_t channels) {
  const revox::index_t half = channels / 2;
  return MyBlock<T>(MyF<T>(revox::PointwiseConv3d<T>(half, half, false), revox::GroupNorm<T>(2, half),
                           ChannelGate<T>(half)),
                    revox::MBConv<T>(half, half, /*expand_ratio=*/2, /*num_groups=*/2));
}

int main(int argc, char** argv) {
  using namespace revox;
  const int steps = argc > 1 ? std::atoi(argv[1]) : 20;
  if (steps <= 0) {
    std::fprintf(stderr, "usage: %s [steps > 0]\n", argv[0]);
    return 2;
  }

  // 1. Check the gradients of the whole block (and so of ChannelGate inside it) in double.
  {
    MyBlock<double> block = make_block<double>(4);
    Parameters<double> params(block);
    testing::GradcheckOptions options;
    options.param_low = 0.2;  // keep GroupNorm's weight away from 0
    options.param_high = 1.2;
    const auto result = testing::gradcheck(block, params, Shape5{1, 4, 3, 4, 5}, options);
    std::printf("%s", result.report.c_str());
    if (!result.passed) return 1;
  }

  // 2. Train a chain of two such blocks (in float) to map a random volume to a target.
  ReversibleSequence<MyBlock<float>> model(
      std::vector<MyBlock<float>>{make_block<float>(8), make_block<float>(8)});
  Parameters<float> params(model);
  Rng rng(7);
  model.reset_parameters(rng);
  const Shape5 shape{1, 8, 8, 8, 8};
  Tensor<float> x(shape), target(shape), y(shape), grad(shape);
  fill_uniform(x.view(), rng, -1.0, 1.0);
  fill_uniform(target.view(), rng, -1.0, 1.0);
  const float learning_rate = 0.2f;
  double first_loss = 0.0, loss = 0.0;
  for (int step = 0; step < steps; ++step) {
    saved_t<decltype(model), Cpu> saved;  // holds only a view of y: nothing is stored
    model.forward(Cpu{}, x.cview(), y.view(), &saved);
    loss = 0.0;  // mean squared error
    for (index_t i = 0; i < y.numel(); ++i) {
      const float diff = y[i] - target[i];
      loss += double(diff) * diff;
      grad[i] = 2.0f * diff / float(y.numel());
    }
    loss /= double(y.numel());
    if (step == 0) first_loss = loss;
    params.zero_grad();
    // Rebuilds the input in y's memory, block by block, and propagates the gradient in
    // place in `grad`; we do not need dx.
    model.backward(Cpu{}, saved, grad.cview(), TensorView<float>{});
    for (index_t i = 0; i < params.size(); ++i) params.values()[i] -= learning_rate * params.grads()[i];
    if (step % 5 == 0 || step == steps - 1) {
      std::printf("step %3d  loss %.5f\n", step, loss);
    }
  }
  std::printf("%lld parameters; loss %.5f -> %.5f; peak CPU memory %.2f MiB\n",
              static_cast<long long>(params.count()), first_loss, loss,
              double(cpu_allocator().peak_bytes()) / (1 << 20));
  return std::isfinite(loss) && loss < first_loss ? 0 : 1;
}
