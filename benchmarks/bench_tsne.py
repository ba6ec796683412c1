"""t-SNE at the paper's size: 1,000 images x 144 heads = 144,000 points (random codes), as
patchinteract.analyses.heads.patterns.tsne_layout runs it (openTSNE, FFT gradients, PCA init).
Prints the time, and the same layout of a 10x smaller sample as the baseline of the ratio."""

import argparse
import time

import patchinteract.compat  # noqa: F401

import numpy as np

from patchinteract.analyses.heads.patterns import tsne_layout


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=144_000)
    parser.add_argument("--dims", type=int, default=32, help="code size (the real-scale configs: 32)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    codes = np.random.default_rng(0).normal(size=(args.points, args.dims)).astype(np.float32)
    seconds = {}
    for points in (args.points // 10, args.points):
        start = time.perf_counter()
        layout = tsne_layout(codes[:points], 30, seed=0, iterations=500, threads=args.threads)
        seconds[points] = time.perf_counter() - start
        assert layout.shape == (points, 2) and np.isfinite(layout).all()
        print(f"{points:>7} points x {args.dims}: {seconds[points]:.1f} s ({args.threads} threads)")
    small, large = seconds[args.points // 10], seconds[args.points]
    print(f"10x the points: {large / small:.1f}x the time")


if __name__ == "__main__":
    main()
