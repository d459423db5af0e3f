// `erase` of the single layers of tests/test_composition.cpp's generator, declared extern in
// tests/support/composition_leaves.hpp: compiled here once.
#include "support/composition_leaves.hpp"

namespace revox_test::composition {

template Node erase<revox::PointwiseConv3d<T>>(revox::PointwiseConv3d<T>);
template Node erase<revox::Conv3d<T>>(revox::Conv3d<T>);
template Node erase<revox::DepthwiseConv3d<T>>(revox::DepthwiseConv3d<T>);
template Node erase<revox::GroupNorm<T>>(revox::GroupNorm<T>);
template Node erase<revox::ReLU<T>>(revox::ReLU<T>);
template Node erase<revox::ReLU6<T>>(revox::ReLU6<T>);
template Node erase<revox::LeakyReLU<T>>(revox::LeakyReLU<T>);
template Node erase<PoolPair>(PoolPair);
template Node erase<revox::MBConv<T>>(revox::MBConv<T>);
template Node erase<revox::ConvBlock<T>>(revox::ConvBlock<T>);

}  // namespace revox_test::composition
