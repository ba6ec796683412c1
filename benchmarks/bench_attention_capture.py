"""Attention capture + Zarr write vs a plain fused timm forward (ViT-B/16, 224, batch 16).

Prints the wall time of both over the same images in one process, timed back to back in each repeat,
their ratio beside its goal (<= 1.2x), and the store's bytes on disk relative to raw float16 (the
lossless default; the opt-in rounding: bench_store_rounding.py). The store goes to the temporary
directory: TMPDIR=/dev/shm takes the disk out of the measure (docs/scaling.md).
"""

import argparse

import numpy as np
import torch
from common import RandomImages, goal_line, remove, scratch_dir, timed, vit_b16

from patchinteract.attention.extraction import write_attention_store
from patchinteract.stores.chunked import folder_bytes
from patchinteract.stores.specs import attention_shape

GOAL = 1.2  # capture + write / plain forward


@torch.no_grad()
def plain_forward(model, dataset, batch_size):
    for images, _labels, _ids in torch.utils.data.DataLoader(dataset, batch_size=batch_size):
        model(images)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compression-level", type=int, default=1)
    args = parser.parse_args()

    model, dataset = vit_b16(), RandomImages(args.images, 224)
    plain_forward(model, RandomImages(args.batch_size, 224), args.batch_size)  # warm-up
    scratch = scratch_dir()
    plain_times, capture_times = [], []
    try:
        for repeat in range(args.repeats):
            plain_times.append(timed(plain_forward, model, dataset, args.batch_size)[0])
            store = scratch / f"attn{repeat}.zarr"
            options = dict(batch_size=args.batch_size, workers=0, compression_level=args.compression_level)
            seconds, _ = timed(
                write_attention_store,
                model,
                dataset,
                store,
                device=torch.device("cpu"),
                chunk_setting="auto",
                attributes={},
                **options,
            )
            capture_times.append(seconds)
        stored = folder_bytes(scratch / "attn0.zarr" / "attn") / args.images
        raw = int(np.prod(attention_shape(model))) * 2
    finally:
        remove(scratch)

    plain, capture = min(plain_times), min(capture_times)
    print(
        f"ViT-B/16 224, random weights, {args.images} images, batch {args.batch_size}, "
        f"{torch.get_num_threads()} threads, compression level {args.compression_level}, "
        f"best of {args.repeats}"
    )
    print(f"plain fused forward:           {plain:7.2f} s  ({args.images / plain:6.1f} images/s)")
    print(f"attention capture + Zarr write: {capture:7.2f} s  ({args.images / capture:6.1f} images/s)")
    ratios = [c / p for c, p in zip(capture_times, plain_times, strict=True)]
    print(goal_line("capture / plain forward", ratios, GOAL))
    print(
        f"store bytes per image:          {stored / 1e6:7.2f} MB of {raw / 1e6:.2f} MB raw float16 "
        f"= {stored / raw:.3f}x"
    )


if __name__ == "__main__":
    main()
