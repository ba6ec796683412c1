"""Head importance by pruning: the batched variants vs the naive loop of one full forward per variant.

Li et al.'s head importance needs, per image, every head of every layer pruned in five modes (and
mode 0): l·(5k + 1) forwards (ViT-B/16: 732). The batched path (patchinteract.analyses.heads.pruning)
runs the stem and the blocks before layer i once for all of layer i's variants and block i onward on a
batch of them; the naive path runs the whole model once per variant, as a straightforward
implementation would. Both run in this process on the same random-weight ViT and images; the naive
loop can time a deterministic sample of the variants (--naive-share) and scale up, since each of its
forwards costs the same. Also prints the FLOPs of one image's batched pruning (torch's FLOP counter),
from which docs/scaling.md projects GPU hours.
"""

import argparse

import numpy as np
import torch
from common import timed, vit_b16
from torch.utils.flop_counter import FlopCounterMode

from patchinteract.analyses.heads.pruning import attention_multiplied, head_importance_batch, layer_variants
from patchinteract.attention.capture import attention_modules
from patchinteract.models.vit import n_prefix_tokens


@torch.no_grad()
def naive_pruning(model, images, share: float):
    """One full forward per (layer, variant) in a sample of ``share`` of them: (probabilities, count)."""
    modules = attention_modules(model)
    tokens = model.patch_embed.num_patches + n_prefix_tokens(model)
    variants = layer_variants(modules[0].num_heads, tokens, n_prefix_tokens(model))
    step = max(1, round(1 / share))
    work = [(layer, v) for layer in range(len(modules)) for v in range(len(variants.masks))][::step]
    outputs = {}
    for layer, v in work:
        with attention_multiplied(modules[layer], variants.masks[v : v + 1]):
            outputs[(layer, v)] = model(images).softmax(-1)
    if images.is_cuda:  # the forwards above are queued, not finished
        torch.cuda.synchronize()
    total = len(modules) * len(variants.masks)
    return outputs, len(work), total


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--images", type=int, default=1, help="images (the batched path takes them together)")
    parser.add_argument("--naive-share", type=float, default=1.0, help="share of the naive forwards timed")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = vit_b16(args.img_size).to(device)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(args.images, 3, args.img_size, args.img_size, generator=generator).to(device)
    labels = torch.zeros(args.images, dtype=torch.long, device=device)
    with FlopCounterMode(display=False) as counter:  # counting adds little next to ViT-B's matrix products
        batched_seconds, arrays = timed(head_importance_batch, model, images, labels)
    flops = counter.get_total_flops() / args.images
    naive_seconds = 0.0
    outputs, timed_forwards, total_forwards = None, 0, 0
    for index in range(args.images):  # naive: one image at a time, as a per-variant loop would
        seconds, (outputs, timed_forwards, total_forwards) = timed(
            naive_pruning, model, images[index : index + 1], args.naive_share
        )
        naive_seconds += seconds * total_forwards / timed_forwards
    # Same numbers both ways (last image, the sampled variants).
    worst = max(
        abs(float(probabilities[0, 0]) - float(arrays["probabilities"][-1, 0] - arrays["prob"][-1, layer, v]))
        for (layer, v), probabilities in outputs.items()
    )
    per_image = batched_seconds / args.images
    print(
        f"ViT-B/16 at {args.img_size}, {args.images} image(s), {args.threads} threads, {total_forwards} variants/image"
    )
    print(
        f"batched: {per_image:.2f} s/image; naive: {naive_seconds / args.images:.2f} s/image "
        f"({timed_forwards} of {total_forwards} forwards timed, scaled)"
    )
    print(f"naive / batched: {naive_seconds / batched_seconds:.2f}x")
    print(f"batched FLOPs per image: {flops / 1e12:.2f} TFLOP ({flops / per_image / 1e9:.0f} GFLOP/s here)")
    print(
        f"1,000 images at this speed: {1000 * per_image / 3600:.2f} h; max |P_y difference| batched vs naive: "
        f"{worst:.2e}"
    )
    assert np.isfinite(worst) and worst < 1e-4, "batched and naive pruning disagree"


if __name__ == "__main__":
    main()
