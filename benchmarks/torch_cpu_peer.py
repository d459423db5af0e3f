#!/usr/bin/env python3
"""PyTorch CPU peer of revox_bench, and the table that compares them.

  run      times the ops of revox_bench in PyTorch on the CPU (float32, NCDHW, batch 1, the
           same shapes, the same thread count) and writes JSON:
             OMP_NUM_THREADS=2 /usr/bin/python3 benchmarks/torch_cpu_peer.py run \\
                 --threads 2 --out torch.json
  compare  merges revox_bench's JSON (--benchmark_out=revox.json --benchmark_out_format=json)
           with the PyTorch timings and prints, per op and shape, revox's median time, GB/s,
           GFLOP/s and fraction of the roofline, and how many times longer oneDNN (NCDHW,
           blocked, blocked + its reorders) and PyTorch take than revox:
             python3 benchmarks/torch_cpu_peer.py compare --revox revox.json \\
                 --torch torch.json [--markdown]

Each PyTorch row, like revox_bench's, is repeated (--repetitions, default 5); a repetition
runs the op until --min-time seconds have passed and reports the mean per call; the row's
figure is the median of the repetitions. Backward rows time only the backward (autograd.grad
on a graph built outside the timed region, retain_graph=True). Only the standard library and
PyTorch are used ("compare" needs no PyTorch).
"""

import argparse
import json
import statistics
import sys
import time

SHAPES = [(32, 64), (32, 96), (64, 64), (30, 128)]  # (C, D = H = W), batch 1


def shape_name(channels, extent):
    return f"C{channels}_D{extent}"


def groups_for(channels):
    """GroupNorm groups of revox_bench: 8 when C is a multiple of 8, otherwise 5."""
    return 8 if channels % 8 == 0 else 5


# ---- run ---------------------------------------------------------------------------------

def time_call(fn, repetitions, min_time):
    """Median over repetitions of the mean seconds per call (each repetition >= min_time)."""
    fn()  # warm-up: allocations, oneDNN primitive creation
    per_call = []
    for _ in range(repetitions):
        calls = 0
        start = time.perf_counter()
        while True:
            fn()
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_time:
                break
        per_call.append(elapsed / calls)
    return statistics.median(per_call), per_call


def build_ops(torch, nn):
    """(name, factory(C, D) -> callable) for each op of revox_bench."""
    F = nn.functional

    def tensor(*shape):
        return torch.rand(*shape) * 2 - 1

    def backward_fn(out, inputs, grad):
        def run():
            torch.autograd.grad(out, inputs, grad, retain_graph=True)
        return run

    def forward_fn(fn):
        def run():
            with torch.no_grad():
                fn()
        return run

    def depthwise(c, d, which):
        x = tensor(1, c, d, d, d)
        w = tensor(c, 1, 3, 3, 3) * 0.2
        if which == "fwd":
            return forward_fn(lambda: F.conv3d(x, w, padding=1, groups=c))
        x.requires_grad_(which in ("bwd_data", "bwd_fused"))
        w.requires_grad_(which in ("bwd_weight", "bwd_fused"))
        y = F.conv3d(x, w, padding=1, groups=c)
        dy = tensor(*y.shape)
        inputs = {"bwd_data": [x], "bwd_weight": [w], "bwd_fused": [x, w]}[which]
        return backward_fn(y, inputs, dy)

    def conv(c, d, which, out_c, k):
        x = tensor(1, c, d, d, d)
        w = tensor(out_c, c, k, k, k) * 0.05
        if which == "fwd":
            return forward_fn(lambda: F.conv3d(x, w, padding=k // 2))
        x.requires_grad_(which == "bwd_data")
        w.requires_grad_(which == "bwd_weight")
        y = F.conv3d(x, w, padding=k // 2)
        return backward_fn(y, [x] if which == "bwd_data" else [w], tensor(*y.shape))

    def group_norm(c, d, which):
        norm = nn.GroupNorm(groups_for(c), c)
        x = tensor(1, c, d, d, d)
        if which == "fwd":
            return forward_fn(lambda: norm(x))
        x.requires_grad_(True)
        y = norm(x)
        return backward_fn(y, [x] + list(norm.parameters()), tensor(*y.shape))

    def max_pool(c, d, which):
        x = tensor(1, c, d, d, d)
        if which == "fwd":
            # With the indices, as revox's forward writes its argmax.
            return forward_fn(lambda: F.max_pool3d(x, 2, return_indices=True))
        x.requires_grad_(True)
        y = F.max_pool3d(x, 2)
        return backward_fn(y, [x], tensor(*y.shape))

    def upsample(c, d, which):
        x = tensor(1, c, d // 2, d // 2, d // 2)
        up = lambda t: F.interpolate(t, scale_factor=2, mode="trilinear", align_corners=False)
        if which == "fwd":
            return forward_fn(lambda: up(x))
        x.requires_grad_(True)
        y = up(x)
        return backward_fn(y, [x], tensor(*y.shape))

    def mbconv_block(c, d):
        block = MBConv(nn, c, c, 2, groups_for(c))
        x = tensor(1, c, d, d, d).requires_grad_(True)
        dy = tensor(1, c, d, d, d)

        def run():
            y = block(x)
            torch.autograd.grad(y, [x] + list(block.parameters()), dy)
        return run

    def reversible_block(c, d):
        half = c // 2
        f = MBConv(nn, half, half, 2, groups_for(half))
        g = MBConv(nn, half, half, 2, groups_for(half))
        x = tensor(1, c, d, d, d).requires_grad_(True)
        dy = tensor(1, c, d, d, d)
        params = list(f.parameters()) + list(g.parameters())

        def run():
            x1, x2 = x[:, :half], x[:, half:]
            y1 = x1 + f(x2)
            y2 = x2 + g(y1)
            torch.autograd.grad(torch.cat([y1, y2], 1), [x] + params, dy)
        return run

    ops = []
    for which in ("fwd", "bwd_data", "bwd_weight", "bwd_fused"):
        ops.append((f"depthwise_{which}", lambda c, d, w=which: depthwise(c, d, w)))
    for which in ("fwd", "bwd_data", "bwd_weight"):
        ops.append((f"pointwise_{which}", lambda c, d, w=which: conv(c, d, w, 2 * c, 1)))
    for which in ("fwd", "bwd_data", "bwd_weight"):
        ops.append((f"conv3x3_{which}", lambda c, d, w=which: conv(c, d, w, c, 3)))
    for which in ("fwd", "bwd"):
        ops.append((f"groupnorm_{which}", lambda c, d, w=which: group_norm(c, d, w)))
        ops.append((f"maxpool_{which}", lambda c, d, w=which: max_pool(c, d, w)))
        ops.append((f"upsample_{which}", lambda c, d, w=which: upsample(c, d, w)))
    ops.append(("mbconv_block_fwd_bwd", mbconv_block))
    ops.append(("reversible_block_fwd_bwd", reversible_block))
    return ops


def MBConv(nn, in_channels, out_channels, expand_ratio, num_groups):
    """revox::MBConv: 1x1 expand -> GN -> ReLU6 -> depthwise 3x3x3 -> GN -> ReLU6 -> 1x1
    project -> GN, no biases, no residual; no expansion when expand_ratio is 1."""
    hidden = in_channels * expand_ratio
    layers = []
    if expand_ratio != 1:
        layers += [nn.Conv3d(in_channels, hidden, 1, bias=False), nn.GroupNorm(num_groups, hidden),
                   nn.ReLU6()]
    layers += [nn.Conv3d(hidden, hidden, 3, padding=1, groups=hidden, bias=False),
               nn.GroupNorm(num_groups, hidden), nn.ReLU6(),
               nn.Conv3d(hidden, out_channels, 1, bias=False),
               nn.GroupNorm(num_groups, out_channels)]
    return nn.Sequential(*layers)


def build_unet(torch, nn, preset):
    """revox::UNet (models/unet.hpp) with the MBConv presets of unet_config.hpp, as an
    ordinary (stored-activation) PyTorch module."""
    presets = {"small": ([16, 32, 64, 128], 4), "mbconv-base": ([30, 60, 120, 180, 240], 5),
               "tiny": ([8, 16, 32], 2)}
    widths, groups = presets[preset]
    F = nn.functional

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoders = nn.ModuleList()
            self.blocks = nn.ModuleList()
            previous = 4
            for width in widths:
                half = width // 2
                self.encoders.append(nn.Conv3d(previous, width, 1))
                self.blocks.append(nn.ModuleList([MBConv(nn, half, half, 2, groups),
                                                  MBConv(nn, half, half, 2, groups)]))
                previous = width
            self.reduce = nn.ModuleList()
            self.decoders = nn.ModuleList()
            for i in range(len(widths) - 1):
                self.reduce.append(nn.Conv3d(widths[i + 1], widths[i], 1))
                self.decoders.append(nn.Sequential(
                    nn.Conv3d(widths[i], widths[i], 3, padding=1, bias=False),
                    nn.GroupNorm(groups, widths[i]), nn.ReLU()))
            self.head = nn.Conv3d(widths[0], 3, 1)

        def forward(self, x):
            skips = []
            for i, (conv, (f, g)) in enumerate(zip(self.encoders, self.blocks)):
                if i > 0:
                    x = F.max_pool3d(x, 2)
                x = conv(x)
                half = x.shape[1] // 2
                y1 = x[:, :half] + f(x[:, half:])
                y2 = x[:, half:] + g(y1)
                x = torch.cat([y1, y2], 1)
                skips.append(x)
            for i in reversed(range(len(widths) - 1)):
                x = F.interpolate(self.reduce[i](x), scale_factor=2, mode="trilinear",
                                  align_corners=False) + skips[i]
                x = self.decoders[i](x)
            return self.head(x)

    return UNet()


def unet_step(torch, nn, preset, extent):
    net = build_unet(torch, nn, preset)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.rand(1, 4, extent, extent, extent) * 2 - 1
    target = (torch.rand(1, 3, extent, extent, extent) < 0.3).float()

    def run():
        optimizer.zero_grad()
        p = torch.sigmoid(net(x))
        dims = (2, 3, 4)
        dice = (2 * (p * target).sum(dims) + 1) / (p.sum(dims) + target.sum(dims) + 1)
        loss = 1 - dice.mean()
        loss.backward()
        optimizer.step()
    return run


def run_command(args):
    import torch
    from torch import nn
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []

    def record(name, fn):
        median, per_call = time_call(fn, args.repetitions, args.min_time)
        rows.append({"name": name, "real_time_ms": median * 1e3,
                     "repetitions_ms": [t * 1e3 for t in per_call]})
        print(f"{name:48s} {median * 1e3:12.2f} ms", flush=True)

    for op, factory in build_ops(torch, nn):
        for channels, extent in SHAPES:
            name = f"torch/{op}/{shape_name(channels, extent)}"
            if args.filter and args.filter not in name:
                continue
            record(name, factory(channels, extent))
    for preset, extent in (("small", 32), ("mbconv-base", 128)):
        name = f"torch/unet_train_step/{preset}_D{extent}"
        if args.filter and args.filter not in name:
            continue
        record(name, unet_step(torch, nn, preset, extent))
    result = {"context": {"torch": torch.__version__, "threads": torch.get_num_threads(),
                          "mkldnn": torch.backends.mkldnn.is_available(),
                          "repetitions": args.repetitions, "min_time_s": args.min_time},
              "benchmarks": rows}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)


# ---- compare -----------------------------------------------------------------------------

def load_revox(path):
    """{row name without the aggregate suffix: run} for the median aggregate of each row of
    revox_bench's JSON (or the only run, when the JSON has no aggregates)."""
    with open(path) as f:
        data = json.load(f)
    rows = {}
    for run in data["benchmarks"]:
        name = run.get("run_name", run["name"])
        # Drop Google Benchmark's settings from the name: /iterations:1, /repeats:1, /real_time.
        name = "/".join(part for part in name.split("/")
                        if part != "real_time" and not part.startswith(("iterations:", "repeats:")))
        if run.get("run_type") == "aggregate" and run.get("aggregate_name") != "median":
            continue
        if run.get("run_type") == "aggregate" or name not in rows:
            rows[name] = run
    return data.get("context", {}), rows


def milliseconds(run):
    scale = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}[run.get("time_unit", "ns")]
    return run["real_time"] * scale


def compare_command(args):
    context, revox = load_revox(args.revox)
    torch_rows = {}
    torch_context = {}
    if args.torch:
        with open(args.torch) as f:
            data = json.load(f)
        torch_context = data["context"]
        torch_rows = {row["name"]: row["real_time_ms"] for row in data["benchmarks"]}

    def ratio(peer_ms, revox_ms):
        return f"{peer_ms / revox_ms:.2f}x" if peer_ms is not None else "-"

    header = ["op", "shape", "revox ms", "GB/s", "GFLOP/s", "roofline", "oneDNN ncdhw",
              "oneDNN blocked", "blocked+reorders", "PyTorch"]
    lines = []
    for name, run in revox.items():
        if not name.startswith("revox/"):
            continue
        _, op, shape = name.split("/", 2)
        ms = milliseconds(run)
        peers = {}
        for layout in ("ncdhw", "blocked", "reorders"):
            peer = revox.get(f"onednn/{op}/{layout}/{shape}")
            peers[layout] = milliseconds(peer) if peer else None
        blocked_total = (peers["blocked"] + peers["reorders"]
                         if peers["blocked"] is not None and peers["reorders"] is not None
                         else None)
        torch_ms = torch_rows.get(f"torch/{op}/{shape}")
        counters = [run.get("GB/s"), run.get("GFLOP/s"), run.get("roofline")]
        lines.append([op, shape, f"{ms:.2f}"] +
                     [f"{v:.3g}" if v else "-" for v in counters] +
                     [ratio(peers["ncdhw"], ms), ratio(peers["blocked"], ms),
                      ratio(blocked_total, ms), ratio(torch_ms, ms)])
    print(f"machine: triad {context.get('triad_GBps', '?')} GB/s, FMA peak "
          f"{context.get('fma_peak_GFLOPps', '?')} GFLOP/s, {context.get('omp_threads', '?')} "
          f"threads; PyTorch {torch_context.get('torch', '-')} at "
          f"{torch_context.get('threads', '-')} threads")
    print("peer columns: peer time / revox time (> 1: revox is faster)")
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for line in lines:
            print("| " + " | ".join(line) + " |")
    else:
        widths = [max(len(str(row[i])) for row in [header] + lines) for i in range(len(header))]
        for row in [header] + lines:
            print("  ".join(str(cell).rjust(width) for cell, width in zip(row, widths)))


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="time the ops in PyTorch")
    run.add_argument("--threads", type=int, required=True,
                     help="intra-op threads (use revox_bench's OMP_NUM_THREADS)")
    run.add_argument("--out", required=True, help="JSON output")
    run.add_argument("--repetitions", type=int, default=5)
    run.add_argument("--min-time", type=float, default=0.5, help="seconds per repetition")
    run.add_argument("--filter", default="", help="only rows whose name contains this")
    compare = sub.add_parser("compare", help="print the revox / oneDNN / PyTorch table")
    compare.add_argument("--revox", required=True, help="revox_bench --benchmark_out JSON")
    compare.add_argument("--torch", help="JSON written by `run`")
    compare.add_argument("--markdown", action="store_true", help="a Markdown table")
    args = parser.parse_args()
    if args.command == "run":
        run_command(args)
    else:
        compare_command(args)


if __name__ == "__main__":
    sys.exit(main())
