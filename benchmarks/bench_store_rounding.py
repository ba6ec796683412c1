"""The attention store's bytes: lossless levels, and the opt-in rounding (attention.mantissa_bits) against
the lossless store, by what it changes downstream: U, the windows of every α and the keep masks of every β.

Reads an existing attention store (for example the demo's trained ones,
results/digits_p4/attention/val.zarr) or, with none given, builds a ViT-B/16 store at 224 (random weights:
real geometry, but its attention is near uniform, so its U is mostly float16 rounding noise: a worst case for
the masks). Each setting rewrites the same attention chunk by chunk; every ratio is against the same run.
Goals (docs/scaling.md): lossless at its floor; rounded <= 0.6x raw with identical windows and keep masks.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import zarr
from common import remove, scratch_dir, vit_b16_store

from patchinteract.interaction.interaction_store import compute_interaction_store
from patchinteract.masks.tokens import kept_patches
from patchinteract.masks.windows import attention_windows
from patchinteract.stores.chunked import ArraySpec, ChunkedStore, folder_bytes, store_folder
from patchinteract.stores.specs import PER_IMAGE_SPECS, rounding_attributes

GOAL_ROUNDED_BYTES = 0.6


def rewrite(source: Path, out: Path, compression_level: int, mantissa_bits: int | None) -> float:
    """Copy the attention store ``source`` with other settings; returns the seconds spent writing."""
    group = zarr.open_group(source, mode="r")
    attn = group["attn"]
    specs = {"attn": ArraySpec(attn.shape[1:], "float16", tuple(attn.metadata.dimension_names), mantissa_bits)}
    specs |= PER_IMAGE_SPECS
    attributes = {k: v for k, v in group.attrs.items() if k not in ("mantissa_bits", "max_relative_error")}
    store = ChunkedStore(
        out, attn.shape[0], attn.chunks[0], specs, attributes | rounding_attributes(mantissa_bits), compression_level
    )
    chunks = [attn[start : start + attn.chunks[0]] for start in range(0, attn.shape[0], attn.chunks[0])]
    per_image = {name: group[name][:] for name in PER_IMAGE_SPECS}
    start = time.perf_counter()
    for index, values in enumerate(chunks):
        first, stop = store.image_range(index)
        store.write_chunk(index, {"attn": values} | {k: v[first:stop] for k, v in per_image.items()})
    store.finalize()
    return time.perf_counter() - start


def read_seconds(path: Path) -> float:
    attn = zarr.open_group(path, mode="r")["attn"]
    start = time.perf_counter()
    for first in range(0, attn.shape[0], attn.chunks[0]):
        attn[first : first + attn.chunks[0]]
    return time.perf_counter() - start


def masks(interaction: Path, alphas, betas) -> dict:
    group = zarr.open_group(interaction, mode="r")
    u, scores, grid = group["U"][:], group["dip_score"][:], tuple(group.attrs["grid"])
    return {
        "U": u,
        **{f"window α={a}": attention_windows(u, a, grid) for a in alphas},
        **{f"keep β={b}": kept_patches(scores, b) for b in betas},
    }


def compare(reference: dict, other: dict) -> str:
    u0, u1 = reference["U"].astype(np.float64), other["U"].astype(np.float64)
    scale = u0.reshape(len(u0), -1).max(axis=1)[:, None, None]  # each image's largest interaction
    parts = [f"|ΔU| ≤ {np.max(np.abs(u1 - u0) / scale):.1e} of the image's max U"]
    for name in sorted(reference.keys() - {"U"}):
        differ = reference[name] != other[name]  # windows: (image, patch, box); keep: (image, patch)
        per_patch = differ.any(axis=-1) if differ.ndim == 3 else differ
        what = "windows" if differ.ndim == 3 else "patches' kept flags"
        parts.append(
            f"{name}: {int(per_patch.sum())} of {per_patch.size} {what} in {int(per_patch.any(axis=1).sum())} images"
        )
    return "; ".join(parts)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", nargs="?", help="an attention store (default: build a ViT-B/16 one)")
    parser.add_argument("--images", type=int, default=64, help="images of the built store")
    parser.add_argument("--bits", type=int, nargs="+", default=[9, 8, 7, 6])
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.5, 0.2, 0.1])
    parser.add_argument("--betas", type=float, nargs="+", default=[0.1, 0.2])
    args = parser.parse_args()

    scratch = scratch_dir()
    try:
        if args.store:
            source = store_folder(args.store)
        else:
            source = vit_b16_store(scratch / "built.zarr", args.images)
        attn = zarr.open_group(source, mode="r")["attn"]
        raw = attn.nbytes
        print(f"{source}: {attn.shape} float16, {raw / 1e6:.1f} MB raw, chunks of {attn.chunks[0]} images")
        settings = [(level, None) for level in (1, 3, 5)] + [(1, bits) for bits in args.bits]
        reference = None
        for level, bits in settings:
            name = f"zstd-{level}" + (f", {bits} mantissa bits" if bits else ", lossless")
            out = scratch / f"{level}_{bits}.zarr"
            write = rewrite(source, out, level, bits)
            stored = folder_bytes(out / "attn")
            read = read_seconds(out)
            line = (
                f"{name:<26} {stored / raw:5.3f}x raw  write {raw / write / 1e6:6.0f} MB/s  "
                f"read {raw / read / 1e6:6.0f} MB/s"
            )
            if level == 1:
                computed = masks(compute_interaction_store(out, scratch / f"u_{bits}.zarr"), args.alphas, args.betas)
                if reference is None:
                    reference = computed
                else:
                    goal = "meets" if stored / raw <= GOAL_ROUNDED_BYTES else "misses"
                    line += f"  ({goal} ≤ {GOAL_ROUNDED_BYTES}x)\n    {compare(reference, computed)}"
            print(line, flush=True)
            remove(out)
    finally:
        remove(scratch)


if __name__ == "__main__":
    main()
