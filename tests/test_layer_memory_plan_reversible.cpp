// plan_layer_memory against measure_layer_memory (see tests/test_layer_memory_plan.cpp) for
// ReversibleBlock and ReversibleSequence, alone and inside Sequentials.
#include <catch2/catch.hpp>

#include <vector>

#include "revox/core/tensor.hpp"
#include "revox/layers/conv_block.hpp"
#include "revox/layers/group_norm.hpp"
#include "revox/layers/mbconv.hpp"
#include "revox/layers/pointwise_conv3d.hpp"
#include "revox/layers/reversible.hpp"
#include "revox/layers/sequential.hpp"
#include "revox/models/memory_planner.hpp"
#include "support/layer_memory_plan.hpp"

using revox::MemoryPlan;
using revox::MemoryPlanOptions;
using revox::Shape5;
using revox_test::check_layer;

TEST_CASE("layer memory plan: ReversibleBlock and ReversibleSequence match the measured peak",
          "[memory_planner][plan]") {
  using MBBlock = revox::ReversibleBlock<revox::MBConv<float>, revox::MBConv<float>>;
  const Shape5 input{2, 16, 16, 16, 16};
  const MBBlock reversible(revox::MBConv<float>(8, 8, 2, 2), revox::MBConv<float>(8, 8, 2, 2));
  const MBBlock stored(revox::MBConv<float>(8, 8, 2, 2), revox::MBConv<float>(8, 8, 2, 2), true);
  const MemoryPlan rev = check_layer("ReversibleBlock<MBConv, MBConv> reversible", reversible, input);
  const MemoryPlan sto = check_layer("ReversibleBlock<MBConv, MBConv> stored", stored, input);
  CHECK(rev.saved_bytes == 0);  // it keeps only a view of its output
  CHECK(sto.saved_bytes > rev.saved_bytes);
  CHECK(sto.resident_bytes == rev.resident_bytes);

  using CBBlock = revox::ReversibleBlock<revox::ConvBlock<float>, revox::ConvBlock<float>>;
  std::vector<CBBlock> blocks;
  for (int k = 0; k < 3; ++k) {
    blocks.emplace_back(revox::ConvBlock<float>(4, 4, 2), revox::ConvBlock<float>(4, 4, 2));
  }
  const revox::ReversibleSequence<CBBlock> sequence(blocks);
  const revox::ReversibleSequence<CBBlock> stored_sequence(blocks, true);
  MemoryPlanOptions options;
  options.input_gradient = true;
  const MemoryPlan seq_rev =
      check_layer("ReversibleSequence of 3 ConvBlock blocks", sequence, Shape5{1, 8, 16, 16, 16}, options);
  const MemoryPlan seq_sto = check_layer("ReversibleSequence of 3 ConvBlock blocks, stored",
                                         stored_sequence, Shape5{1, 8, 16, 16, 16}, options);
  CHECK(seq_sto.activation_peak_bytes > seq_rev.activation_peak_bytes);

  // Reversible layers inside Sequentials: at the start, in the middle (in place on the
  // previous output) and at the end (in place in the caller's y).
  using Seq = revox::Sequential<revox::ReversibleSequence<CBBlock>, revox::PointwiseConv3d<float>,
                                revox::ReversibleSequence<CBBlock>, revox::GroupNorm<float>,
                                revox::ReversibleSequence<CBBlock>>;
  const Seq composed(sequence, revox::PointwiseConv3d<float>(8, 8), sequence,
                     revox::GroupNorm<float>(2, 8), sequence);
  check_layer("Sequential with ReversibleSequences first, in the middle and last", composed,
              Shape5{2, 8, 12, 16, 16}, options);
  const Seq composed_stored(stored_sequence, revox::PointwiseConv3d<float>(8, 8), stored_sequence,
                            revox::GroupNorm<float>(2, 8), stored_sequence);
  check_layer("the same, stored", composed_stored, Shape5{2, 8, 12, 16, 16}, options);
}
