"""Training-step time of the masked branches over the plain ViT step (ViT-B/16, 224 px, random weights).

One step is forward, cross-entropy, backward and an AdamW update on one batch. Every
configuration runs in this process, interleaved over the repeats; the median step of each
is divided by the ViT's. AWD+DIP runs twice: on every token as the model is defined
(MaskedViT.dense_forward, the code before DIP computed on fewer tokens) and on the kept
tokens (MaskedViT.forward). The target for the reduced form is (1 - β) + 0.1.
"""

import argparse
import json
import statistics
import time

import numpy as np
import torch
from common import vit_b16

from patchinteract.masks.tokens import kept_patches
from patchinteract.masks.windows import attention_windows
from patchinteract.models.masked import MaskedViT
from patchinteract.models.vit import patch_grid


def random_masks(images: int, grid: tuple[int, int], alpha: float, beta: float, seed: int = 0):
    """Windows (eq. 4) and kept tokens of random U, as the mask stores hold them."""
    rng = np.random.default_rng(seed)
    n = grid[0] * grid[1]
    u = rng.random((images, n, n)).astype(np.float32)
    keep = kept_patches(rng.random((images, n)), beta)
    return torch.from_numpy(attention_windows(u, alpha, grid)), torch.from_numpy(keep)


def step_seconds(forward, optimizer, images, labels, masks) -> float:
    start = time.perf_counter()
    loss = torch.nn.functional.cross_entropy(forward(images, *masks), labels)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--alpha", type=float, default=0.1)
    parser.add_argument("--betas", type=float, nargs="+", default=[0.2, 0.5])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", help="also write the ratios as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = MaskedViT(vit_b16()).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    images = torch.randn(args.batch_size, 3, 224, 224)
    labels = torch.randint(0, 1000, (args.batch_size,))
    windows, _ = random_masks(args.batch_size, patch_grid(model.vit), args.alpha, 0.0)
    configs = {"vit": (model, ()), f"awd a{args.alpha}": (model, (windows,))}
    for beta in args.betas:
        masks = random_masks(args.batch_size, patch_grid(model.vit), args.alpha, beta)
        configs[f"awd_dip b{beta} all tokens"] = (model.dense_forward, masks)
        configs[f"awd_dip b{beta} kept tokens"] = (model, masks)
    times = {name: [] for name in configs}
    for repeat in range(args.repeats + 1):  # the first round warms up
        for name, (forward, masks) in configs.items():
            seconds = step_seconds(forward, optimizer, images, labels, masks)
            if repeat:
                times[name].append(seconds)
    vit = statistics.median(times["vit"])
    print(f"ViT-B/16, 224 px, batch {args.batch_size}, {args.threads} threads, median of {args.repeats} steps")
    ratios = {}
    for name, values in times.items():
        ratios[name] = statistics.median(values) / vit
        print(f"{name:28s} {statistics.median(values):7.3f} s/step  {ratios[name]:.3f} x ViT")
    for beta in args.betas:
        print(f"target for β = {beta}: <= {1 - beta + 0.1:.2f}")
    if args.out:
        with open(args.out, "w") as file:
            json.dump({"batch_size": args.batch_size, "threads": args.threads, "ratios": ratios}, file, indent=2)


if __name__ == "__main__":
    main()
