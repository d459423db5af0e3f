// The type-erased nodes of tests/test_composition.cpp's random networks and `erase`, which
// wraps a concrete layer as the Erased kind its traits call for. Erasing a library layer
// compiles its forward and backward (in double, on the CPU) behind the Erased interface: for
// the leaves and the containers over erased nodes that is most of the file's compile time, so
// `erase` of each of them is declared extern here and compiled once, in
// tests/test_composition_leaves.cpp and tests/test_composition_containers.cpp
// (tests/CMakeLists.txt builds those with test_composition.cpp).
#pragma once

#include <utility>
#include <variant>

#include "revox/layers/activations.hpp"
#include "revox/layers/conv3d.hpp"
#include "revox/layers/conv_block.hpp"
#include "revox/layers/depthwise_conv3d.hpp"
#include "revox/layers/group_norm.hpp"
#include "revox/layers/max_pool3d.hpp"
#include "revox/layers/mbconv.hpp"
#include "revox/layers/pointwise_conv3d.hpp"
#include "revox/layers/reversible.hpp"
#include "revox/layers/sequential.hpp"
#include "revox/layers/upsample_trilinear.hpp"
#include "erased_layer.hpp"

namespace revox_test::composition {

using T = double;
using Plain = Erased<T, LayerKind::plain>;
using Keeps = Erased<T, LayerKind::keeps_output>;
using Rev = Erased<T, LayerKind::reversible>;
using Node = std::variant<Plain, Keeps, Rev>;

// Wraps a concrete layer as the Erased kind its traits call for.
template <class L>
Node erase(L layer) {
  if constexpr (revox::is_reversible_v<L>) {
    return Rev::of(std::move(layer));
  } else if constexpr (revox::keeps_output_v<L>) {
    return Keeps::of(std::move(layer));
  } else {
    return Plain::of(std::move(layer));
  }
}

// The leaves the generator builds (test_composition_leaves.cpp instantiates them).
using PoolPair = revox::Sequential<revox::MaxPool3d<T>, revox::PointwiseConv3d<T>,
                                  revox::UpsampleTrilinear<T>>;
extern template Node erase<revox::PointwiseConv3d<T>>(revox::PointwiseConv3d<T>);
extern template Node erase<revox::Conv3d<T>>(revox::Conv3d<T>);
extern template Node erase<revox::DepthwiseConv3d<T>>(revox::DepthwiseConv3d<T>);
extern template Node erase<revox::GroupNorm<T>>(revox::GroupNorm<T>);
extern template Node erase<revox::ReLU<T>>(revox::ReLU<T>);
extern template Node erase<revox::ReLU6<T>>(revox::ReLU6<T>);
extern template Node erase<revox::LeakyReLU<T>>(revox::LeakyReLU<T>);
extern template Node erase<PoolPair>(PoolPair);
extern template Node erase<revox::MBConv<T>>(revox::MBConv<T>);
extern template Node erase<revox::ConvBlock<T>>(revox::ConvBlock<T>);


// The containers over the erased nodes (test_composition_containers.cpp instantiates them):
// Sequential of one, two and three nodes, ReversibleBlock and ReversibleSequence.
extern template Node erase<revox::Sequential<Plain>>(revox::Sequential<Plain>);
extern template Node erase<revox::Sequential<Keeps>>(revox::Sequential<Keeps>);
extern template Node erase<revox::Sequential<Rev>>(revox::Sequential<Rev>);
extern template Node erase<revox::Sequential<Plain, Plain>>(revox::Sequential<Plain, Plain>);
extern template Node erase<revox::Sequential<Plain, Keeps>>(revox::Sequential<Plain, Keeps>);
extern template Node erase<revox::Sequential<Plain, Rev>>(revox::Sequential<Plain, Rev>);
extern template Node erase<revox::Sequential<Keeps, Plain>>(revox::Sequential<Keeps, Plain>);
extern template Node erase<revox::Sequential<Keeps, Keeps>>(revox::Sequential<Keeps, Keeps>);
extern template Node erase<revox::Sequential<Keeps, Rev>>(revox::Sequential<Keeps, Rev>);
extern template Node erase<revox::Sequential<Rev, Plain>>(revox::Sequential<Rev, Plain>);
extern template Node erase<revox::Sequential<Rev, Keeps>>(revox::Sequential<Rev, Keeps>);
extern template Node erase<revox::Sequential<Rev, Rev>>(revox::Sequential<Rev, Rev>);
extern template Node erase<revox::Sequential<Plain, Plain, Plain>>(revox::Sequential<Plain, Plain, Plain>);
extern template Node erase<revox::Sequential<Plain, Plain, Keeps>>(revox::Sequential<Plain, Plain, Keeps>);
extern template Node erase<revox::Sequential<Plain, Plain, Rev>>(revox::Sequential<Plain, Plain, Rev>);
extern template Node erase<revox::Sequential<Plain, Keeps, Plain>>(revox::Sequential<Plain, Keeps, Plain>);
extern template Node erase<revox::Sequential<Plain, Keeps, Keeps>>(revox::Sequential<Plain, Keeps, Keeps>);
extern template Node erase<revox::Sequential<Plain, Keeps, Rev>>(revox::Sequential<Plain, Keeps, Rev>);
extern template Node erase<revox::Sequential<Plain, Rev, Plain>>(revox::Sequential<Plain, Rev, Plain>);
extern template Node erase<revox::Sequential<Plain, Rev, Keeps>>(revox::Sequential<Plain, Rev, Keeps>);
extern template Node erase<revox::Sequential<Plain, Rev, Rev>>(revox::Sequential<Plain, Rev, Rev>);
extern template Node erase<revox::Sequential<Keeps, Plain, Plain>>(revox::Sequential<Keeps, Plain, Plain>);
extern template Node erase<revox::Sequential<Keeps, Plain, Keeps>>(revox::Sequential<Keeps, Plain, Keeps>);
extern template Node erase<revox::Sequential<Keeps, Plain, Rev>>(revox::Sequential<Keeps, Plain, Rev>);
extern template Node erase<revox::Sequential<Keeps, Keeps, Plain>>(revox::Sequential<Keeps, Keeps, Plain>);
extern template Node erase<revox::Sequential<Keeps, Keeps, Keeps>>(revox::Sequential<Keeps, Keeps, Keeps>);
extern template Node erase<revox::Sequential<Keeps, Keeps, Rev>>(revox::Sequential<Keeps, Keeps, Rev>);
extern template Node erase<revox::Sequential<Keeps, Rev, Plain>>(revox::Sequential<Keeps, Rev, Plain>);
extern template Node erase<revox::Sequential<Keeps, Rev, Keeps>>(revox::Sequential<Keeps, Rev, Keeps>);
extern template Node erase<revox::Sequential<Keeps, Rev, Rev>>(revox::Sequential<Keeps, Rev, Rev>);
extern template Node erase<revox::Sequential<Rev, Plain, Plain>>(revox::Sequential<Rev, Plain, Plain>);
extern template Node erase<revox::Sequential<Rev, Plain, Keeps>>(revox::Sequential<Rev, Plain, Keeps>);
extern template Node erase<revox::Sequential<Rev, Plain, Rev>>(revox::Sequential<Rev, Plain, Rev>);
extern template Node erase<revox::Sequential<Rev, Keeps, Plain>>(revox::Sequential<Rev, Keeps, Plain>);
extern template Node erase<revox::Sequential<Rev, Keeps, Keeps>>(revox::Sequential<Rev, Keeps, Keeps>);
extern template Node erase<revox::Sequential<Rev, Keeps, Rev>>(revox::Sequential<Rev, Keeps, Rev>);
extern template Node erase<revox::Sequential<Rev, Rev, Plain>>(revox::Sequential<Rev, Rev, Plain>);
extern template Node erase<revox::Sequential<Rev, Rev, Keeps>>(revox::Sequential<Rev, Rev, Keeps>);
extern template Node erase<revox::Sequential<Rev, Rev, Rev>>(revox::Sequential<Rev, Rev, Rev>);
extern template Node erase<revox::ReversibleBlock<Plain, Plain>>(revox::ReversibleBlock<Plain, Plain>);
extern template Node erase<revox::ReversibleBlock<Plain, Keeps>>(revox::ReversibleBlock<Plain, Keeps>);
extern template Node erase<revox::ReversibleBlock<Plain, Rev>>(revox::ReversibleBlock<Plain, Rev>);
extern template Node erase<revox::ReversibleBlock<Keeps, Plain>>(revox::ReversibleBlock<Keeps, Plain>);
extern template Node erase<revox::ReversibleBlock<Keeps, Keeps>>(revox::ReversibleBlock<Keeps, Keeps>);
extern template Node erase<revox::ReversibleBlock<Keeps, Rev>>(revox::ReversibleBlock<Keeps, Rev>);
extern template Node erase<revox::ReversibleBlock<Rev, Plain>>(revox::ReversibleBlock<Rev, Plain>);
extern template Node erase<revox::ReversibleBlock<Rev, Keeps>>(revox::ReversibleBlock<Rev, Keeps>);
extern template Node erase<revox::ReversibleBlock<Rev, Rev>>(revox::ReversibleBlock<Rev, Rev>);
extern template Node erase<revox::ReversibleSequence<revox::ReversibleBlock<Keeps, Keeps>>>(revox::ReversibleSequence<revox::ReversibleBlock<Keeps, Keeps>>);

}  // namespace revox_test::composition
