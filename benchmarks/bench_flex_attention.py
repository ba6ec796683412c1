"""Windowed attention (AWD): PyTorch's FlexAttention with a per-image block mask against SDPA with the
dense boolean mask that MaskedViT hands to timm, for ViT-B/16 at 224, 384 and 448 px (197, 577, 785 tokens).

One attention call of one layer (12 heads of 64), float32, inference, batch --batch-size. The
windows are eq. 4's of a U that decays with the distance between patches (as the demo's U do:
nearby patches interact most), so the windows are local and FlexAttention can skip blocks.
FlexAttention runs compiled (torch.compile; the first call, the compilation, is timed apart),
its block mask built from the same boolean mask (what a model would build once per batch).
Ratios are against SDPA with the boolean mask in the same process; SDPA without a mask is the
floor. ``--device cuda`` measures a training step (forward and backward) instead.
"""

import argparse
import json
import statistics
import time

import patchinteract.compat  # noqa: F401

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

from patchinteract.coordinates import grid_xy
from patchinteract.masks.windows import attention_windows
from patchinteract.models.masked import window_attention_mask


def local_windows(images: int, side: int, alpha: float, seed: int = 0) -> torch.Tensor:
    """Windows (image, N, 4) of eq. 4 from a U that decays with patch distance, plus noise."""
    xs, ys = grid_xy((side, side))
    distance = np.hypot(xs[:, None] - xs[None], ys[:, None] - ys[None])
    rng = np.random.default_rng(seed)
    u = np.exp(-distance / 2.0)[None] + 0.05 * rng.random((images, side * side, side * side))
    return torch.from_numpy(attention_windows(u.astype(np.float32), alpha, (side, side)))


def timed(function, device, repeats):
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        function()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(size: int, args, device: torch.device, compiled) -> dict:
    """One image size: SDPA without and with the boolean mask, and compiled FlexAttention with a block mask."""
    side, training = size // 16, device.type == "cuda"
    tokens = side * side + 1
    windows = local_windows(args.batch_size, side, args.alpha).to(device)
    start = time.perf_counter()
    mask = window_attention_mask(windows, (side, side), 1)  # (image, 1, T, T) bool, once per batch
    mask_seconds = time.perf_counter() - start
    dense = mask[:, 0]
    start = time.perf_counter()
    block_mask = create_block_mask(
        lambda b, _h, q, kv: dense[b, q, kv],
        args.batch_size,
        None,
        tokens,
        tokens,
        device=device,
        BLOCK_SIZE=args.block_size,
    )
    block_seconds = time.perf_counter() - start
    q, k, v = (torch.randn(args.batch_size, 12, tokens, 64, device=device, requires_grad=training) for _ in range(3))
    calls = {
        "sdpa_no_mask": lambda: F.scaled_dot_product_attention(q, k, v),
        "sdpa_bool_mask": lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
        "flex_block_mask": lambda: compiled(q, k, v, block_mask=block_mask),
    }

    def run(attention):
        output = attention()
        if training:
            output.sum().backward()

    with torch.set_grad_enabled(training):
        start = time.perf_counter()
        run(calls["flex_block_mask"])  # compiles for this shape
        compile_seconds = time.perf_counter() - start
        difference = (calls["flex_block_mask"]() - calls["sdpa_bool_mask"]()).abs().max().item()
        for attention in calls.values():
            run(attention)  # warm-up
        seconds = {name: timed(lambda a=attention: run(a), device, args.repeats) for name, attention in calls.items()}
    return {
        "image_size": size,
        "tokens": tokens,
        "allowed_share": float(mask.float().mean()),
        "block_size": args.block_size,
        "block_sparsity": max(0.0, float(block_mask.sparsity()) / 100),  # of the padded blocks
        "ms_sdpa_no_mask": 1e3 * seconds["sdpa_no_mask"],
        "ms_sdpa_bool_mask": 1e3 * seconds["sdpa_bool_mask"],
        "ms_flex_block_mask": 1e3 * seconds["flex_block_mask"],
        "flex_over_sdpa_mask": seconds["flex_block_mask"] / seconds["sdpa_bool_mask"],
        "ms_build_bool_mask": 1e3 * mask_seconds,
        "ms_build_block_mask": 1e3 * block_seconds,
        "s_compile": compile_seconds,
        "max_abs_difference": difference,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 384, 448])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--alpha", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--block-size", type=int, default=128, help="FlexAttention's block of queries and keys")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", help="also write the rows as JSON")
    args = parser.parse_args()
    device = torch.device(args.device)
    compiled = torch.compile(flex_attention)
    rows = []
    for size in args.sizes:
        rows.append(measure(size, args, device, compiled))
        print(json.dumps(rows[-1]))
    mode = "training step (forward + backward)" if device.type == "cuda" else "inference"
    print(
        f"\n{device} {mode}, batch {args.batch_size}, 12 heads x 64, α = {args.alpha}, "
        f"Flex blocks of {args.block_size}, {torch.get_num_threads()} threads"
    )
    print("tokens | allowed | skipped blocks | SDPA ms | SDPA bool mask ms | Flex block mask ms | Flex / SDPA mask")
    for row in rows:
        cells = [f"{row['tokens']}", f"{row['allowed_share']:.1%}", f"{row['block_sparsity']:.1%}"]
        cells += [f"{row[key]:.1f}" for key in ("ms_sdpa_no_mask", "ms_sdpa_bool_mask", "ms_flex_block_mask")]
        print(" | ".join([*cells, f"{row['flex_over_sdpa_mask']:.2f}"]))
    if args.out:
        result = {"device": str(device), "mode": mode, "batch_size": args.batch_size, "rows": rows}
        with open(args.out, "w") as file:
            json.dump(result, file, indent=2)


if __name__ == "__main__":
    main()
