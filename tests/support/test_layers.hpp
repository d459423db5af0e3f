// Small layers defined outside the library, used by the tests of containers (Sequential,
// Parameters) and to prove that user-defined layers plug into revox.
#pragma once

#include "revox/layers/add.hpp"
#include "revox/layers/layer.hpp"

namespace revox_test {

// y[n, c] = scale[c] * x[n, c] + shift[c]. Saves nothing: backward needs no input for dx,
// but it keeps a view of x for the scale gradient.
template <class T>
class ChannelAffine {
 public:
  using value_type = T;
  template <class Dev>
  struct Saved {
    revox::TensorView<const T> x;
  };
  explicit ChannelAffine(revox::index_t channels)
      : channels_(channels), scale_({channels}), shift_({channels}) {
    REVOX_CHECK(channels > 0, "ChannelAffine: channels must be positive, got ", channels);
  }
  revox::Shape5 output_shape(revox::Shape5 in) const {
    REVOX_CHECK_EQ("ChannelAffine: input channels", channels_, in.c);
    return in;
  }
  template <class Fn>
  void visit_params(Fn&& fn) {
    fn("scale", scale_);
    fn("shift", shift_);
  }
  void reset_parameters(revox::Rng& rng) {
    revox::fill_uniform(scale_.value, channels_, rng, 0.5, 1.5);
    revox::fill_uniform(shift_.value, channels_, rng, -0.5, 0.5);
  }
  template <class Dev>
  void forward(const Dev&, revox::TensorView<const T> x, revox::TensorView<T> y,
               revox::nondeduced_t<Saved<Dev>>* saved) const {
    revox::check_output_view("ChannelAffine", output_shape(x.shape), y.shape);
    const revox::index_t s = x.shape.spatial();
    for (revox::index_t n = 0; n < x.shape.n; ++n)
      for (revox::index_t c = 0; c < channels_; ++c)
        for (revox::index_t i = 0; i < s; ++i)
          y.channel(n, c)[i] = scale_.value[c] * x.channel(n, c)[i] + shift_.value[c];
    if (saved != nullptr) saved->x = x;
  }
  template <class Dev>
  void backward(const Dev&, Saved<Dev>& saved, revox::TensorView<const T> dy,
                revox::TensorView<T> dx) {
    const auto x = saved.x;
    const revox::index_t s = x.shape.spatial();
    for (revox::index_t n = 0; n < x.shape.n; ++n)
      for (revox::index_t c = 0; c < channels_; ++c)
        for (revox::index_t i = 0; i < s; ++i) {
          const T g = dy.channel(n, c)[i];
          if (!dx.empty()) dx.channel(n, c)[i] = scale_.value[c] * g;
          scale_.grad[c] += x.channel(n, c)[i] * g;
          shift_.grad[c] += g;
        }
  }

 private:
  revox::index_t channels_;
  revox::Param<T> scale_;
  revox::Param<T> shift_;
};

// y = x * x, elementwise; keeps a view of x.
template <class T>
class Square {
 public:
  using value_type = T;
  template <class Dev>
  struct Saved {
    revox::TensorView<const T> x;
  };
  revox::Shape5 output_shape(revox::Shape5 in) const { return in; }
  template <class Fn>
  void visit_params(Fn&&) {}
  void reset_parameters(revox::Rng&) {}
  template <class Dev>
  void forward(const Dev&, revox::TensorView<const T> x, revox::TensorView<T> y,
               revox::nondeduced_t<Saved<Dev>>* saved) const {
    for (revox::index_t i = 0; i < x.numel(); ++i) y[i] = x[i] * x[i];
    if (saved != nullptr) saved->x = x;
  }
  template <class Dev>
  void backward(const Dev&, Saved<Dev>& saved, revox::TensorView<const T> dy,
                revox::TensorView<T> dx) {
    if (dx.empty()) return;
    for (revox::index_t i = 0; i < dx.numel(); ++i) dx[i] = 2 * saved.x[i] * dy[i];
  }
};

// Keeps the first `keep` channels: a shape-changing layer.
template <class T>
class FirstChannels {
 public:
  using value_type = T;
  template <class Dev>
  struct Saved {
    revox::Shape5 input_shape;
  };
  explicit FirstChannels(revox::index_t keep) : keep_(keep) {}
  revox::Shape5 output_shape(revox::Shape5 in) const {
    REVOX_CHECK(in.c >= keep_, "FirstChannels: input has ", in.c, " channels, needs ", keep_);
    return in.with_channels(keep_);
  }
  template <class Fn>
  void visit_params(Fn&&) {}
  void reset_parameters(revox::Rng&) {}
  template <class Dev>
  void forward(const Dev&, revox::TensorView<const T> x, revox::TensorView<T> y,
               revox::nondeduced_t<Saved<Dev>>* saved) const {
    for (revox::index_t n = 0; n < x.shape.n; ++n)
      for (revox::index_t c = 0; c < keep_; ++c)
        for (revox::index_t i = 0; i < x.shape.spatial(); ++i)
          y.channel(n, c)[i] = x.channel(n, c)[i];
    if (saved != nullptr) saved->input_shape = x.shape;
  }
  template <class Dev>
  void backward(const Dev&, Saved<Dev>& saved, revox::TensorView<const T> dy,
                revox::TensorView<T> dx) {
    if (dx.empty()) return;
    const revox::Shape5 in = saved.input_shape;
    for (revox::index_t n = 0; n < in.n; ++n)
      for (revox::index_t c = 0; c < in.c; ++c)
        for (revox::index_t i = 0; i < in.spatial(); ++i)
          dx.channel(n, c)[i] = c < keep_ ? dy.channel(n, c)[i] : T(0);
  }

 private:
  revox::index_t keep_;
};

// y = x[:, :C/2] + x[:, C/2:], so that the generic gradcheck can drive Add's forward and
// backward (Add itself is binary and does not fit the unary layer contract).
template <class T>
class AddHalves {
 public:
  using value_type = T;
  template <class Dev>
  struct Saved {
    revox::Shape5 input_shape{};
  };

  revox::Shape5 output_shape(revox::Shape5 in) const {
    REVOX_CHECK(in.c % 2 == 0, "AddHalves: channels (", in.c, ") must be even");
    return in.with_channels(in.c / 2);
  }
  template <class Fn>
  void visit_params(Fn&& fn) {
    add_.visit_params(fn);
  }
  void reset_parameters(revox::Rng& rng) { add_.reset_parameters(rng); }

  template <class Dev>
  void forward(const Dev& dev, revox::TensorView<const T> x, revox::TensorView<T> y,
               revox::nondeduced_t<Saved<Dev>>* saved) const {
    const revox::Shape5 half = output_shape(x.shape);
    revox::Tensor<T, Dev> a(half);
    revox::Tensor<T, Dev> b(half);
    for (revox::index_t n = 0; n < half.n; ++n) {
      for (revox::index_t i = 0; i < half.c * half.spatial(); ++i) {
        a.view().channel(n, 0)[i] = x.channel(n, 0)[i];
        b.view().channel(n, 0)[i] = x.channel(n, half.c)[i];
      }
    }
    add_.forward(dev, a.cview(), b.cview(), y);
    if (saved != nullptr) saved->input_shape = x.shape;
  }

  template <class Dev>
  void backward(const Dev& dev, Saved<Dev>& saved, revox::TensorView<const T> dy,
                revox::TensorView<T> dx) {
    const revox::Shape5 half = output_shape(saved.input_shape);
    revox::Tensor<T, Dev> da(half);
    revox::Tensor<T, Dev> db(half);
    add_.backward(dev, dy, da.view(), db.view());
    for (revox::index_t n = 0; n < half.n; ++n) {
      for (revox::index_t i = 0; i < half.c * half.spatial(); ++i) {
        dx.channel(n, 0)[i] = da.view().channel(n, 0)[i];
        dx.channel(n, half.c)[i] = db.view().channel(n, 0)[i];
      }
    }
  }

 private:
  revox::Add<T> add_;
};

}  // namespace revox_test
