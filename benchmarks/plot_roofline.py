#!/usr/bin/env python3
"""Draws the fraction of this machine's roofline that each op of revox_bench reaches (one bar
per benchmark shape), with oneDNN's best layout for the same op and shape as a marker, from
revox_bench's JSON (--benchmark_out=revox.json --benchmark_out_format=json):

  python3 benchmarks/plot_roofline.py --revox revox.json --out docs/images/cpu_roofline.png

Needs matplotlib (a plotting-time dependency only: pip install matplotlib). The roofline is
revox_bench's: t_roofline / t with t_roofline = max(FLOPs / FMA peak, bytes / triad
bandwidth), both measured by the same run at start-up.
"""

import argparse
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from torch_cpu_peer import load_revox  # noqa: E402  (same folder; "compare" needs no torch)

OPS = ["depthwise_fwd", "depthwise_bwd_data", "depthwise_bwd_weight", "depthwise_bwd_fused",
       "pointwise_fwd", "pointwise_bwd_data", "pointwise_bwd_weight", "conv3x3_fwd",
       "conv3x3_bwd_data", "conv3x3_bwd_weight", "groupnorm_fwd", "groupnorm_bwd",
       "maxpool_fwd", "maxpool_bwd", "upsample_fwd", "upsample_bwd"]
SHAPES = ["C32_D64", "C32_D96", "C64_D64", "C30_D128"]


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--revox", required=True, help="revox_bench JSON")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--title", default="")
    args = parser.parse_args()
    context, rows = load_revox(args.revox)

    fig, ax = plt.subplots(figsize=(13, 5.5), dpi=110)
    width = 0.8 / len(SHAPES)
    colors = ["#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd"]
    for s, shape in enumerate(SHAPES):
        xs, values, peers_x, peers = [], [], [], []
        for i, op in enumerate(OPS):
            run = rows.get(f"revox/{op}/{shape}")
            x = i - 0.4 + width * (s + 0.5)
            if run and run.get("roofline") is not None:
                xs.append(x)
                values.append(run["roofline"])
            best = None
            for layout in ("ncdhw", "blocked"):
                peer = rows.get(f"onednn/{op}/{layout}/{shape}")
                if peer and peer.get("roofline") is not None:
                    best = max(best or 0.0, peer["roofline"])
            if best is not None:
                peers_x.append(x)
                peers.append(best)
        ax.bar(xs, values, width, color=colors[s], label=f"revox {shape.replace('_', ' ')}")
        ax.scatter(peers_x, peers, marker="_", s=120, color="black", zorder=3,
                   label="oneDNN, best layout" if s == 0 else None)
    ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xticks(range(len(OPS)))
    ax.set_xticklabels(OPS, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("fraction of roofline (t_roofline / t)")
    title = args.title or (
        f"revox CPU kernels vs this machine's roofline: triad "
        f"{float(context.get('triad_GBps', 0)):.1f} GB/s, FMA peak "
        f"{float(context.get('fma_peak_GFLOPps', 0)):.0f} GFLOP/s, "
        f"{context.get('omp_threads', '?')} threads")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, ncol=5, loc="upper right")
    ax.set_ylim(0, max(1.1, ax.get_ylim()[1]))
    fig.tight_layout()
    fig.savefig(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
