"""The head-attention store: every per-head reduction of the attention that Li et al.'s analyses need,
computed in one pass over the attention store with Dask (like U), or streamed during inference when
the attention is not kept (``attention.store: none``).

Arrays (stores/specs.py, docs/design.md): ``strength`` (image, layer, head, hop), ``mean_distance``
(image, layer, head), ``patch_top`` (image, layer, head, entry) and, with a prefix token,
``cls_pattern`` (image, layer, head, position); plus label, prediction and image_id. The images are
the head analyses' sample of the split (analyses/heads/sample.py), in manifest order.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import zarr

from patchinteract.analyses.heads.patterns import cls_pattern, top_count, top_entries
from patchinteract.analyses.heads.strength import head_measures, strength_entropy
from patchinteract.stores.chunked import ChunkedStore, auto_chunk
from patchinteract.stores.specs import PER_IMAGE_SPECS, head_attention_specs

log = logging.getLogger(__name__)


def head_reductions(
    attn: np.ndarray, n_prefix: int, grid: tuple[int, int], count: int, names: tuple[str, ...] | None = None
) -> dict[str, np.ndarray]:
    """The store's per-head arrays (or only ``names`` of them) for a batch of attention (image, layer, head, T, T)."""
    arrays = {}
    wanted = set(names or ("strength", "mean_distance", "patch_top", "cls_pattern"))
    if wanted & {"strength", "mean_distance"}:
        arrays["strength"], arrays["mean_distance"] = head_measures(attn, n_prefix, grid)
    if "patch_top" in wanted:
        arrays["patch_top"] = top_entries(attn, n_prefix, count)
    if "cls_pattern" in wanted and n_prefix:
        arrays["cls_pattern"] = cls_pattern(attn, n_prefix).astype(np.float16)
    return {name: values for name, values in arrays.items() if name in wanted}


def store_settings(attributes: dict, n_layers: int, n_heads: int, top_share: float, n_images: int):
    """(specs, images per chunk, attributes) of a head-attention store."""
    grid, prefix = tuple(attributes["grid"]), int(attributes["n_prefix_tokens"])
    count = top_count(grid[0] * grid[1], top_share)
    specs = head_attention_specs(n_layers, n_heads, prefix, grid, count)
    return specs, auto_chunk(specs, n_images), dict(attributes) | {"top_share": top_share, "top_count": count}


def compute_head_store(
    attention_path: Path | str,
    out_path: Path | str,
    images: np.ndarray,
    top_share: float,
    *,
    dask: dict,
    compression_level: int = 1,
) -> Path:
    """The head-attention store of ``images`` (indices into the attention store), computed with Dask
    (``dask``: mode, workers, address, slurm as for the interaction store)."""
    # Dask is imported where its graphs are built: the streaming jobs never load it (job start).
    import dask.array as da

    from patchinteract.stores.compute import store_with_dask

    source = zarr.open_group(attention_path, mode="r")
    attn = da.from_zarr(source["attn"])[images]
    n_layers, n_heads = attn.shape[1:3]
    specs, chunk, attributes = store_settings(dict(source.attrs), n_layers, n_heads, top_share, len(images))
    grid, prefix, count = tuple(attributes["grid"]), int(attributes["n_prefix_tokens"]), attributes["top_count"]
    store = ChunkedStore(out_path, len(images), chunk, specs, attributes, compression_level, resumable=False)
    for name in PER_IMAGE_SPECS:
        store.array(name)[:] = source[name][:][images]
    attn = attn.rechunk({0: chunk, 1: -1, 2: -1, 3: -1, 4: -1})
    sources, targets = [], []
    for name, spec in specs.items():
        if name in PER_IMAGE_SPECS:
            continue
        per_block = attn.map_blocks(
            lambda block, name=name: head_reductions(block, prefix, grid, count, (name,))[name],
            drop_axis=[3, 4] if len(spec.shape_per_image) == 2 else [4],
            chunks=(attn.chunks[0], *((s,) for s in spec.shape_per_image)),
            dtype=spec.dtype,
        )
        sources.append(per_block.rechunk({0: store.array(name).chunks[0]}))
        targets.append(store.array(name))
    log.info("head-attention store of %d images (%d per chunk), top %d entries", len(images), chunk, count)
    store_with_dask(sources, targets, **dask)
    return store.finalize()


def write_head_store_streaming(
    model, dataset, path, top_share: float, *, device, batch_size, workers, compression_level, attributes
) -> Path:
    """The head-attention store computed during inference over ``dataset`` (the image subset), without
    keeping the attention (``attention.store: none``)."""
    from patchinteract.attention.extraction import fill_store, store_attributes
    from patchinteract.stores.specs import attention_shape

    n_layers, n_heads, _, _ = attention_shape(model)
    specs, chunk, attributes = store_settings(
        store_attributes(model, **attributes), n_layers, n_heads, top_share, len(dataset)
    )
    grid, prefix, count = tuple(attributes["grid"]), int(attributes["n_prefix_tokens"]), attributes["top_count"]
    store = ChunkedStore(path, len(dataset), chunk, specs, attributes, compression_level)
    fill_store(
        model,
        dataset,
        store,
        lambda attention, _images: head_reductions(attention.cpu().numpy(), prefix, grid, count),
        device=device,
        batch_size=batch_size,
        workers=workers,
    )
    return store.finalize()


def strength_tables(store_path: Path | str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Long tables of a head-attention store: (image_id, layer, head, hop, strength) and
    (image_id, layer, head, entropy, mean_distance)."""
    store = zarr.open_group(store_path, mode="r")
    strength, distance, image_ids = store["strength"][:], store["mean_distance"][:], store["image_id"][:]
    n_images, n_layers, n_heads, n_hops = strength.shape
    index = pd.MultiIndex.from_product(
        [image_ids, range(n_layers), range(n_heads)], names=["image_id", "layer", "head"]
    ).to_frame(index=False)
    per_head = index.assign(entropy=strength_entropy(strength).reshape(-1), mean_distance=distance.reshape(-1))
    per_hop = index.loc[index.index.repeat(n_hops)].reset_index(drop=True)
    per_hop["hop"] = np.tile(np.arange(n_hops), len(index))
    per_hop["strength"] = strength.reshape(-1)
    return per_hop, per_head
