"""The U stage (Dask over the attention store) vs only reading the store, and vs a naive loop.

Builds a ViT-B/16 (random weights) attention store, then times in one process, back to back in each
repeat: reading and decoding every chunk (the floor), compute_interaction_store (goal <= 1.3x the
floor), and the same stage done naively (goal: the U stage >= 3x faster): a per-image loop of
`astype(float32).var(1).var(1)` writing U into a Zarr array of the same layout.
"""

import argparse

import dask.array as da
import numpy as np
import zarr
from common import goal_line, remove, scratch_dir, timed, vit_b16_store

from patchinteract.interaction.interaction_store import compute_interaction_store
from patchinteract.stores.chunked import compressor
from patchinteract.stores.compute import dask_cluster

GOAL_OVER_READ, GOAL_OVER_NAIVE = 1.3, 3.0


class DiscardingSink:
    """A da.store target that drops what it gets: reading + decoding only."""

    def __setitem__(self, key, value):
        pass


def read_only(path, workers):
    with dask_cluster("threads", workers):
        da.store(da.from_zarr(zarr.open_group(path, mode="r")["attn"]), DiscardingSink(), lock=False)


def naive_stage(path, out, prefix):
    attn = zarr.open_group(path, mode="r")["attn"]
    n = attn.shape[-1] - prefix
    u = zarr.create_array(
        out, shape=(attn.shape[0], n, n), chunks=(1, n, n), dtype="float32", compressors=compressor(1)
    )
    for i in range(attn.shape[0]):
        u[i : i + 1] = attn[i : i + 1].astype(np.float32)[..., prefix:, prefix:].var(1).var(1)
    return u[:]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    scratch = scratch_dir()
    try:
        store = vit_b16_store(scratch / "attn.zarr", args.images)
        read_times, u_times, naive_times = [], [], []
        for repeat in range(args.repeats):
            read_times.append(timed(read_only, store, args.workers)[0])
            seconds, out = timed(
                compute_interaction_store, store, scratch / f"u{repeat}.zarr", dask_mode="threads", workers=args.workers
            )
            u_times.append(seconds)
            naive_seconds, naive_u = timed(naive_stage, store, scratch / f"naive{repeat}.zarr", 1)
            naive_times.append(naive_seconds)
        np.testing.assert_allclose(zarr.open_group(out, mode="r")["U"][:], naive_u, rtol=1e-4, atol=1e-9)
    finally:
        remove(scratch)

    read, u, naive = min(read_times), min(u_times), min(naive_times)
    print(f"ViT-B/16 224 attention store, {args.images} images, {args.workers} Dask threads, best of {args.repeats}")
    print(f"read + decode only:        {read:6.2f} s  ({args.images / read:6.1f} images/s)")
    print(f"U stage (Dask, to Zarr):   {u:6.2f} s  ({args.images / u:6.1f} images/s)")
    print(f"naive per-image stage:    {naive:6.2f} s  ({args.images / naive:6.1f} images/s)")
    over_read = [u / r for u, r in zip(u_times, read_times, strict=True)]
    over_naive = [n / u for n, u in zip(naive_times, u_times, strict=True)]
    print(goal_line("U stage / read only", over_read, GOAL_OVER_READ))
    print(goal_line("naive loop / U stage", over_naive, GOAL_OVER_NAIVE, at_most=False))


if __name__ == "__main__":
    main()
