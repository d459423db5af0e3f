// `erase` of the containers (Sequential, ReversibleBlock, ReversibleSequence) of tests/test_composition.cpp's generator, declared extern in
// tests/support/composition_leaves.hpp: compiled here once.
#include "support/composition_leaves.hpp"

namespace revox_test::composition {

template Node erase<revox::Sequential<Plain>>(revox::Sequential<Plain>);
template Node erase<revox::Sequential<Keeps>>(revox::Sequential<Keeps>);
template Node erase<revox::Sequential<Rev>>(revox::Sequential<Rev>);
template Node erase<revox::Sequential<Plain, Plain>>(revox::Sequential<Plain, Plain>);
template Node erase<revox::Sequential<Plain, Keeps>>(revox::Sequential<Plain, Keeps>);
template Node erase<revox::Sequential<Plain, Rev>>(revox::Sequential<Plain, Rev>);
template Node erase<revox::Sequential<Keeps, Plain>>(revox::Sequential<Keeps, Plain>);
template Node erase<revox::Sequential<Keeps, Keeps>>(revox::Sequential<Keeps, Keeps>);
template Node erase<revox::Sequential<Keeps, Rev>>(revox::Sequential<Keeps, Rev>);
template Node erase<revox::Sequential<Rev, Plain>>(revox::Sequential<Rev, Plain>);
template Node erase<revox::Sequential<Rev, Keeps>>(revox::Sequential<Rev, Keeps>);
template Node erase<revox::Sequential<Rev, Rev>>(revox::Sequential<Rev, Rev>);
template Node erase<revox::Sequential<Plain, Plain, Plain>>(revox::Sequential<Plain, Plain, Plain>);
template Node erase<revox::Sequential<Plain, Plain, Keeps>>(revox::Sequential<Plain, Plain, Keeps>);
template Node erase<revox::Sequential<Plain, Plain, Rev>>(revox::Sequential<Plain, Plain, Rev>);
template Node erase<revox::Sequential<Plain, Keeps, Plain>>(revox::Sequential<Plain, Keeps, Plain>);
template Node erase<revox::Sequential<Plain, Keeps, Keeps>>(revox::Sequential<Plain, Keeps, Keeps>);
template Node erase<revox::Sequential<Plain, Keeps, Rev>>(revox::Sequential<Plain, Keeps, Rev>);
template Node erase<revox::Sequential<Plain, Rev, Plain>>(revox::Sequential<Plain, Rev, Plain>);
template Node erase<revox::Sequential<Plain, Rev, Keeps>>(revox::Sequential<Plain, Rev, Keeps>);
template Node erase<revox::Sequential<Plain, Rev, Rev>>(revox::Sequential<Plain, Rev, Rev>);
template Node erase<revox::Sequential<Keeps, Plain, Plain>>(revox::Sequential<Keeps, Plain, Plain>);
template Node erase<revox::Sequential<Keeps, Plain, Keeps>>(revox::Sequential<Keeps, Plain, Keeps>);
template Node erase<revox::Sequential<Keeps, Plain, Rev>>(revox::Sequential<Keeps, Plain, Rev>);
template Node erase<revox::Sequential<Keeps, Keeps, Plain>>(revox::Sequential<Keeps, Keeps, Plain>);
template Node erase<revox::Sequential<Keeps, Keeps, Keeps>>(revox::Sequential<Keeps, Keeps, Keeps>);
template Node erase<revox::Sequential<Keeps, Keeps, Rev>>(revox::Sequential<Keeps, Keeps, Rev>);
template Node erase<revox::Sequential<Keeps, Rev, Plain>>(revox::Sequential<Keeps, Rev, Plain>);
template Node erase<revox::Sequential<Keeps, Rev, Keeps>>(revox::Sequential<Keeps, Rev, Keeps>);
template Node erase<revox::Sequential<Keeps, Rev, Rev>>(revox::Sequential<Keeps, Rev, Rev>);
template Node erase<revox::Sequential<Rev, Plain, Plain>>(revox::Sequential<Rev, Plain, Plain>);
template Node erase<revox::Sequential<Rev, Plain, Keeps>>(revox::Sequential<Rev, Plain, Keeps>);
template Node erase<revox::Sequential<Rev, Plain, Rev>>(revox::Sequential<Rev, Plain, Rev>);
template Node erase<revox::Sequential<Rev, Keeps, Plain>>(revox::Sequential<Rev, Keeps, Plain>);
template Node erase<revox::Sequential<Rev, Keeps, Keeps>>(revox::Sequential<Rev, Keeps, Keeps>);
template Node erase<revox::Sequential<Rev, Keeps, Rev>>(revox::Sequential<Rev, Keeps, Rev>);
template Node erase<revox::Sequential<Rev, Rev, Plain>>(revox::Sequential<Rev, Rev, Plain>);
template Node erase<revox::Sequential<Rev, Rev, Keeps>>(revox::Sequential<Rev, Rev, Keeps>);
template Node erase<revox::Sequential<Rev, Rev, Rev>>(revox::Sequential<Rev, Rev, Rev>);
template Node erase<revox::ReversibleBlock<Plain, Plain>>(revox::ReversibleBlock<Plain, Plain>);
template Node erase<revox::ReversibleBlock<Plain, Keeps>>(revox::ReversibleBlock<Plain, Keeps>);
template Node erase<revox::ReversibleBlock<Plain, Rev>>(revox::ReversibleBlock<Plain, Rev>);
template Node erase<revox::ReversibleBlock<Keeps, Plain>>(revox::ReversibleBlock<Keeps, Plain>);
template Node erase<revox::ReversibleBlock<Keeps, Keeps>>(revox::ReversibleBlock<Keeps, Keeps>);
template Node erase<revox::ReversibleBlock<Keeps, Rev>>(revox::ReversibleBlock<Keeps, Rev>);
template Node erase<revox::ReversibleBlock<Rev, Plain>>(revox::ReversibleBlock<Rev, Plain>);
template Node erase<revox::ReversibleBlock<Rev, Keeps>>(revox::ReversibleBlock<Rev, Keeps>);
template Node erase<revox::ReversibleBlock<Rev, Rev>>(revox::ReversibleBlock<Rev, Rev>);
template Node erase<revox::ReversibleSequence<revox::ReversibleBlock<Keeps, Keeps>>>(revox::ReversibleSequence<revox::ReversibleBlock<Keeps, Keeps>>);

}  // namespace revox_test::composition
