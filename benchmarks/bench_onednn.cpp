// revox_bench's oneDNN peer rows (compiled in when CMake finds oneDNN; Debian's libdnnl-dev,
// scripts/install-deps.sh --peers): the same ops, shapes and work models as revox's rows, run
// through oneDNN's primitives on the same OpenMP threads.
//   onednn/<op>/ncdhw/<shape>     activations in NCDHW (revox's layout), weights in PyTorch's
//                                 order: what a caller with revox's tensors gets directly
//   onednn/<op>/blocked/<shape>   oneDNN's preferred layouts: format_tag::any for dense and
//                                 pointwise convolutions (channel-blocked nCdhw16c here),
//                                 channels-last NDHWC for depthwise (its 3-D JIT kernel's
//                                 layout), and for pooling and resampling the layout oneDNN's
//                                 convolutions pick for the same tensor
//   onednn/<op>/reorders/<shape>  reordering that op's activations from NCDHW into the blocked
//                                 layout and its activation outputs back (weights are not
//                                 counted: they are small and reordered once per step)
// ops: depthwise_fwd/bwd_data/bwd_weight, pointwise_fwd/bwd_data/bwd_weight (C -> 2C; also as
// *_bf16 rows with bfloat16 activations and weights, f32 weight gradient, ncdhw and blocked),
// conv3x3_fwd/bwd_data/bwd_weight (C -> C), maxpool_fwd/bwd (2x2x2), upsample_fwd/bwd
// (linear resampling x2, which is align_corners=False trilinear). The label of each row names
// the oneDNN implementation that ran and the source layout it used.
#include "bench_common.hpp"

#if defined(REVOX_BENCH_WITH_ONEDNN)

#include <oneapi/dnnl/dnnl.hpp>
#include <oneapi/dnnl/dnnl_debug.h>

#include <algorithm>
#include <functional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace revox::bench {
namespace {

using dnnl::memory;
using Tag = memory::format_tag;
using DataType = memory::data_type;

struct OneDnn {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
};

OneDnn& onednn() {
  static OneDnn instance;
  return instance;
}

memory::dims dims_of(const Shape5& s) { return {s.n, s.c, s.d, s.h, s.w}; }

memory::desc plain_desc(const Shape5& s) {
  return memory::desc(dims_of(s), DataType::f32, Tag::ncdhw);
}

// oneDNN's tag-like name of a 5-D activation layout: dimensions by decreasing outer stride,
// upper case where blocked, then the inner blocks ("ncdhw", "ndhwc", "nCdhw16c").
std::string format_of(const memory::desc& md) {
  const dnnl_memory_desc_t& d = md.data;
  if (d.format_kind != dnnl_blocked || d.ndims != 5) return dnnl_fmt_kind2str(d.format_kind);
  const dnnl_blocking_desc_t& b = d.format_desc.blocking;
  std::vector<int> order{0, 1, 2, 3, 4};
  std::stable_sort(order.begin(), order.end(),
                   [&](int l, int r) { return b.strides[l] > b.strides[r]; });
  const char* letters = "ncdhw";
  std::string name;
  for (const int dim : order) {
    bool blocked = false;
    for (int i = 0; i < b.inner_nblks; ++i) blocked = blocked || b.inner_idxs[i] == dim;
    name += blocked ? static_cast<char>(letters[dim] - 'a' + 'A') : letters[dim];
  }
  for (int i = 0; i < b.inner_nblks; ++i) {
    name += std::to_string(b.inner_blks[i]) + letters[b.inner_idxs[i]];
  }
  return name;
}

// A memory of layout `md` holding uniform random values, written in NCDHW (or the plain tag
// of `plain`) and reordered in, so that the padding of blocked layouts is zero.
memory random_memory(const memory::desc& md, const memory::desc& plain, std::uint64_t seed) {
  OneDnn& dnn = onednn();
  memory source(plain, dnn.engine);
  fill_uniform(static_cast<float*>(source.get_data_handle()),
               static_cast<index_t>(plain.get_size() / sizeof(float)), seed, -0.5f, 0.5f);
  if (md == plain) return source;
  memory target(md, dnn.engine);
  dnnl::reorder(source, target).execute(dnn.stream, source, target);
  dnn.stream.wait();
  return target;
}

memory zero_memory(const memory::desc& md) {
  memory m(md, onednn().engine);
  auto* p = static_cast<float*>(m.get_data_handle());
  std::fill(p, p + md.get_size() / sizeof(float), 0.0f);
  return m;
}

// The channel-blocked layout oneDNN's convolutions choose for a tensor of shape s.
memory::desc blocked_desc(const Shape5& s) {
  const memory::desc any(dims_of(s), DataType::f32, Tag::any);
  const memory::desc weights({s.c, s.c, 1, 1, 1}, DataType::f32, Tag::any);
  const dnnl::convolution_forward::desc desc(
      dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, any, weights, any,
      {1, 1, 1}, {0, 0, 0}, {0, 0, 0});
  return dnnl::convolution_forward::primitive_desc(desc, onednn().engine).src_desc();
}

enum class Layout { ncdhw, blocked, reorders };
enum class Pass { forward, backward_data, backward_weight };

const char* layout_name(Layout layout) {
  switch (layout) {
    case Layout::ncdhw: return "ncdhw";
    case Layout::blocked: return "blocked";
    case Layout::reorders: return "reorders";
  }
  return "";
}

// One primitive with its arguments; `inputs` and `outputs` name the activation arguments
// (for the reorder rows) with their plain layouts.
struct Prepared {
  dnnl::primitive primitive;
  std::unordered_map<int, memory> args;
  std::vector<std::pair<int, memory::desc>> inputs;
  std::vector<std::pair<int, memory::desc>> outputs;
  std::string label;
};

// Times `prepared` (or, for Layout::reorders, the reorders of its activations).
void run_prepared(benchmark::State& state, Prepared prepared, Layout layout, Work work) {
  OneDnn& dnn = onednn();
  if (layout != Layout::reorders) {
    state.SetLabel(prepared.label);
    timed_loop(state, work, [&] {
      prepared.primitive.execute(dnn.stream, prepared.args);
      dnn.stream.wait();
    });
    return;
  }
  // Reorders: plain -> the primitive's layout for inputs, back for outputs.
  struct Step {
    dnnl::reorder reorder;
    memory from, to;
  };
  std::vector<Step> steps;
  double bytes = 0.0;
  for (const auto& [arg, plain] : prepared.inputs) {
    const memory& target = prepared.args.at(arg);
    memory from = random_memory(plain, plain, 11);
    steps.push_back({dnnl::reorder(from, target), from, target});
    bytes += static_cast<double>(plain.get_size() + target.get_desc().get_size());
  }
  for (const auto& [arg, plain] : prepared.outputs) {
    const memory& source = prepared.args.at(arg);
    memory to = zero_memory(plain);
    steps.push_back({dnnl::reorder(source, to), source, to});
    bytes += static_cast<double>(plain.get_size() + source.get_desc().get_size());
  }
  state.SetLabel("reorders for " + prepared.label);
  (void)work;
  timed_loop(state, {0.0, bytes}, [&] {
    for (Step& step : steps) step.reorder.execute(dnn.stream, step.from, step.to);
    dnn.stream.wait();
  });
}

// ---- convolutions --------------------------------------------------------------------------

enum class ConvKind { depthwise, pointwise, dense };

// act: the activations' data type; with bf16 the weights are bf16 too and the weight gradient
// f32 (oneDNN's mixed-precision training configuration).
Prepared prepare_conv(ConvKind kind, Pass pass, const Shape5& x, Layout layout,
                      DataType act = DataType::f32) {
  OneDnn& dnn = onednn();
  const index_t out_c = kind == ConvKind::pointwise ? 2 * x.c : x.c;
  const Shape5 y = x.with_channels(out_c);
  const index_t k = kind == ConvKind::pointwise ? 1 : 3;
  const index_t pad = k / 2;
  memory::dims weight_dims;
  Tag weight_tag;
  if (kind == ConvKind::depthwise) {
    weight_dims = {x.c, 1, 1, 3, 3, 3};
    weight_tag = Tag::goidhw;
  } else {
    weight_dims = {out_c, x.c, k, k, k};
    weight_tag = Tag::oidhw;
  }
  const bool plain = layout == Layout::ncdhw;
  const memory::desc x_plain = plain_desc(x);
  const memory::desc y_plain = plain_desc(y);
  const memory::desc w_plain(weight_dims, DataType::f32, weight_tag);
  // oneDNN 2.6's only 3-D depthwise JIT kernel (brdgmm, forward) takes channels-last
  // activations; given format_tag::any it picks NCDHW and its GEMM path instead.
  const Tag preferred = kind == ConvKind::depthwise ? Tag::ndhwc : Tag::any;
  const Tag act_tag = plain ? Tag::ncdhw : preferred;
  const memory::desc x_md(dims_of(x), act, act_tag);
  const memory::desc y_md(dims_of(y), act, act_tag);
  const memory::desc w_md(weight_dims, act, plain ? weight_tag : Tag::any);
  const memory::desc dw_md(weight_dims, DataType::f32, plain ? weight_tag : Tag::any);
  const memory::dims strides{1, 1, 1};
  const memory::dims padding{pad, pad, pad};
  const auto algorithm = dnnl::algorithm::convolution_direct;
  const dnnl::convolution_forward::primitive_desc fwd(
      dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, algorithm, x_md, w_md,
                                      y_md, strides, padding, padding),
      dnn.engine);
  Prepared p;
  if (pass == Pass::forward) {
    p.primitive = dnnl::convolution_forward(fwd);
    p.args = {{DNNL_ARG_SRC, random_memory(fwd.src_desc(), x_plain, 1)},
              {DNNL_ARG_WEIGHTS, random_memory(fwd.weights_desc(), w_plain, 2)},
              {DNNL_ARG_DST, zero_memory(fwd.dst_desc())}};
    p.inputs = {{DNNL_ARG_SRC, x_plain}};
    p.outputs = {{DNNL_ARG_DST, y_plain}};
    p.label = std::string(fwd.impl_info_str()) + " src " + format_of(fwd.src_desc());
  } else if (pass == Pass::backward_data) {
    const dnnl::convolution_backward_data::primitive_desc bwd(
        dnnl::convolution_backward_data::desc(algorithm, x_md, w_md, y_md, strides, padding,
                                              padding),
        dnn.engine, fwd);
    p.primitive = dnnl::convolution_backward_data(bwd);
    p.args = {{DNNL_ARG_DIFF_DST, random_memory(bwd.diff_dst_desc(), y_plain, 3)},
              {DNNL_ARG_WEIGHTS, random_memory(bwd.weights_desc(), w_plain, 2)},
              {DNNL_ARG_DIFF_SRC, zero_memory(bwd.diff_src_desc())}};
    p.inputs = {{DNNL_ARG_DIFF_DST, y_plain}};
    p.outputs = {{DNNL_ARG_DIFF_SRC, x_plain}};
    p.label = std::string(bwd.impl_info_str()) + " diff_dst " + format_of(bwd.diff_dst_desc());
  } else {
    const dnnl::convolution_backward_weights::primitive_desc bwd(
        dnnl::convolution_backward_weights::desc(algorithm, x_md, dw_md, y_md, strides, padding,
                                                 padding),
        dnn.engine, fwd);
    p.primitive = dnnl::convolution_backward_weights(bwd);
    p.args = {{DNNL_ARG_SRC, random_memory(bwd.src_desc(), x_plain, 1)},
              {DNNL_ARG_DIFF_DST, random_memory(bwd.diff_dst_desc(), y_plain, 3)},
              {DNNL_ARG_DIFF_WEIGHTS, zero_memory(bwd.diff_weights_desc())}};
    p.inputs = {{DNNL_ARG_SRC, x_plain}, {DNNL_ARG_DIFF_DST, y_plain}};
    p.label = std::string(bwd.impl_info_str()) + " src " + format_of(bwd.src_desc());
  }
  return p;
}

// ---- pooling and resampling ----------------------------------------------------------------

// MaxPool3d 2x2x2 of x; backward needs the forward's workspace, which setup computes.
Prepared prepare_pool(Pass pass, const Shape5& x, Layout layout) {
  OneDnn& dnn = onednn();
  const Shape5 y{x.n, x.c, x.d / 2, x.h / 2, x.w / 2};
  const memory::desc x_plain = plain_desc(x);
  const memory::desc y_plain = plain_desc(y);
  const bool plain = layout == Layout::ncdhw;
  const memory::desc x_md = plain ? x_plain : blocked_desc(x);
  const memory::desc y_md = plain ? y_plain : memory::desc(dims_of(y), DataType::f32, Tag::any);
  const memory::dims two{2, 2, 2};
  const memory::dims zero{0, 0, 0};
  const dnnl::pooling_forward::primitive_desc fwd(
      dnnl::pooling_forward::desc(dnnl::prop_kind::forward_training,
                                  dnnl::algorithm::pooling_max, x_md, y_md, two, two, zero, zero),
      dnn.engine);
  memory src = random_memory(fwd.src_desc(), x_plain, 1);
  memory dst = zero_memory(fwd.dst_desc());
  memory workspace(fwd.workspace_desc(), dnn.engine);
  Prepared p;
  if (pass == Pass::forward) {
    p.primitive = dnnl::pooling_forward(fwd);
    p.args = {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}, {DNNL_ARG_WORKSPACE, workspace}};
    p.inputs = {{DNNL_ARG_SRC, x_plain}};
    p.outputs = {{DNNL_ARG_DST, y_plain}};
    p.label = std::string(fwd.impl_info_str()) + " src " + format_of(fwd.src_desc());
    return p;
  }
  dnnl::pooling_forward(fwd).execute(
      dnn.stream, {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}, {DNNL_ARG_WORKSPACE, workspace}});
  dnn.stream.wait();
  const dnnl::pooling_backward::primitive_desc bwd(
      dnnl::pooling_backward::desc(dnnl::algorithm::pooling_max, fwd.src_desc(), fwd.dst_desc(),
                                   two, two, zero, zero),
      dnn.engine, fwd);
  p.primitive = dnnl::pooling_backward(bwd);
  p.args = {{DNNL_ARG_DIFF_DST, random_memory(bwd.diff_dst_desc(), y_plain, 3)},
            {DNNL_ARG_DIFF_SRC, zero_memory(bwd.diff_src_desc())},
            {DNNL_ARG_WORKSPACE, workspace}};
  p.inputs = {{DNNL_ARG_DIFF_DST, y_plain}};
  p.outputs = {{DNNL_ARG_DIFF_SRC, x_plain}};
  p.label = std::string(bwd.impl_info_str()) + " diff_src " + format_of(bwd.diff_src_desc());
  return p;
}

// Linear resampling by 2 from x = y / 2 to y (the benchmark shape).
Prepared prepare_upsample(Pass pass, const Shape5& y, Layout layout) {
  OneDnn& dnn = onednn();
  const Shape5 x{y.n, y.c, y.d / 2, y.h / 2, y.w / 2};
  const memory::desc x_plain = plain_desc(x);
  const memory::desc y_plain = plain_desc(y);
  const bool plain = layout == Layout::ncdhw;
  const memory::desc x_md = plain ? x_plain : blocked_desc(x);
  const memory::desc y_md = plain ? y_plain : blocked_desc(y);
  const dnnl::resampling_forward::primitive_desc fwd(
      dnnl::resampling_forward::desc(dnnl::prop_kind::forward_training,
                                     dnnl::algorithm::resampling_linear, x_md, y_md),
      dnn.engine);
  Prepared p;
  if (pass == Pass::forward) {
    p.primitive = dnnl::resampling_forward(fwd);
    p.args = {{DNNL_ARG_SRC, random_memory(fwd.src_desc(), x_plain, 1)},
              {DNNL_ARG_DST, zero_memory(fwd.dst_desc())}};
    p.inputs = {{DNNL_ARG_SRC, x_plain}};
    p.outputs = {{DNNL_ARG_DST, y_plain}};
    p.label = std::string(fwd.impl_info_str()) + " src " + format_of(fwd.src_desc());
    return p;
  }
  const dnnl::resampling_backward::primitive_desc bwd(
      dnnl::resampling_backward::desc(dnnl::algorithm::resampling_linear, x_md, y_md),
      dnn.engine, fwd);
  p.primitive = dnnl::resampling_backward(bwd);
  p.args = {{DNNL_ARG_DIFF_DST, random_memory(bwd.diff_dst_desc(), y_plain, 3)},
            {DNNL_ARG_DIFF_SRC, zero_memory(bwd.diff_src_desc())}};
  p.inputs = {{DNNL_ARG_DIFF_DST, y_plain}};
  p.outputs = {{DNNL_ARG_DIFF_SRC, x_plain}};
  p.label = std::string(bwd.impl_info_str()) + " diff_dst " + format_of(bwd.diff_dst_desc());
  return p;
}

}  // namespace

void register_onednn_benchmarks() {
  struct Op {
    const char* name;
    std::function<Prepared(const Shape5&, Layout)> prepare;
    std::function<Work(const Shape5&)> work;
  };
  auto conv = [](ConvKind kind, Pass pass) {
    return [kind, pass](const Shape5& s, Layout layout) {
      return prepare_conv(kind, pass, s, layout);
    };
  };
  const auto depthwise = [](const Shape5& s) { return depthwise_work(s, false); };
  const auto pointwise = [](const Shape5& s) { return pointwise_work(s, 2 * s.c); };
  const std::vector<Op> ops = {
      {"depthwise_fwd", conv(ConvKind::depthwise, Pass::forward), depthwise},
      {"depthwise_bwd_data", conv(ConvKind::depthwise, Pass::backward_data), depthwise},
      {"depthwise_bwd_weight", conv(ConvKind::depthwise, Pass::backward_weight), depthwise},
      {"pointwise_fwd", conv(ConvKind::pointwise, Pass::forward), pointwise},
      {"pointwise_bwd_data", conv(ConvKind::pointwise, Pass::backward_data), pointwise},
      {"pointwise_bwd_weight", conv(ConvKind::pointwise, Pass::backward_weight), pointwise},
      {"conv3x3_fwd", conv(ConvKind::dense, Pass::forward), dense_work},
      {"conv3x3_bwd_data", conv(ConvKind::dense, Pass::backward_data), dense_work},
      {"conv3x3_bwd_weight", conv(ConvKind::dense, Pass::backward_weight), dense_work},
      {"maxpool_fwd", [](const Shape5& s, Layout l) { return prepare_pool(Pass::forward, s, l); },
       max_pool_work},
      {"maxpool_bwd",
       [](const Shape5& s, Layout l) { return prepare_pool(Pass::backward_data, s, l); },
       max_pool_work},
      {"upsample_fwd",
       [](const Shape5& s, Layout l) { return prepare_upsample(Pass::forward, s, l); },
       upsample_work},
      {"upsample_bwd",
       [](const Shape5& s, Layout l) { return prepare_upsample(Pass::backward_data, s, l); },
       upsample_work},
  };
  // bfloat16 activations (bf16 weights, f32 weight gradient): the primitives only, in NCDHW
  // and in oneDNN's preferred layout; bytes at 2 per activation element.
  auto conv_bf16 = [](Pass pass) {
    return [pass](const Shape5& s, Layout layout) {
      return prepare_conv(ConvKind::pointwise, pass, s, layout, DataType::bf16);
    };
  };
  const auto pointwise_bf16 = [](const Shape5& s) {
    Work w = pointwise_work(s, 2 * s.c);
    w.bytes /= 2.0;
    return w;
  };
  const std::vector<Op> bf16_ops = {
      {"pointwise_fwd_bf16", conv_bf16(Pass::forward), pointwise_bf16},
      {"pointwise_bwd_data_bf16", conv_bf16(Pass::backward_data), pointwise_bf16},
      {"pointwise_bwd_weight_bf16", conv_bf16(Pass::backward_weight), pointwise_bf16},
  };
  // float32 ops in three layouts; the bf16 ones as primitives only (no reorder rows).
  const std::vector<Layout> all_layouts = {Layout::ncdhw, Layout::blocked, Layout::reorders};
  const std::vector<Layout> primitive_layouts = {Layout::ncdhw, Layout::blocked};
  std::vector<std::pair<Op, const std::vector<Layout>*>> rows;
  for (const Op& op : ops) rows.emplace_back(op, &all_layouts);
  for (const Op& op : bf16_ops) rows.emplace_back(op, &primitive_layouts);
  for (const auto& [op, layouts] : rows) {
    for (const Layout layout : *layouts) {
      for (const BenchShape& bs : bench_shapes()) {
        const std::string name =
            std::string("onednn/") + op.name + "/" + layout_name(layout) + "/" + bs.name();
        const auto prepare = op.prepare;
        const auto work = op.work;
        const auto run = [prepare, work, layout, bs](benchmark::State& state) {
          const Shape5 s = bs.shape();
          const Layout prepared_layout = layout == Layout::ncdhw ? Layout::ncdhw : Layout::blocked;
          run_prepared(state, prepare(s, prepared_layout), layout, work(s));
        };
        auto* row = benchmark::RegisterBenchmark(name.c_str(), run);
        row->Unit(benchmark::kMillisecond)->UseRealTime();
        // oneDNN's NCDHW depthwise forward takes seconds to minutes per call here (its GEMM
        // path, group by group): one repetition of one call is all this row gets.
        if (std::string(op.name) == "depthwise_fwd" && layout == Layout::ncdhw) {
          row->Iterations(1)->Repetitions(1);
        }
      }
    }
  }
}

}  // namespace revox::bench

#else

namespace revox::bench {
void register_onednn_benchmarks() {}
}  // namespace revox::bench

#endif
