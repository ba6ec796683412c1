"""The interaction store (``U``, ``dip_score``) from an attention store, with Dask.

dask.array reads the Zarr chunks of ``attn`` (whole images per chunk), applies
:func:`patchinteract.interaction.maps.interaction_map` block by block, and stores
the results chunk-aligned into a new Zarr group. The scheduler is the local
threaded one by default, a LocalCluster, Dask workers started as Slurm jobs
(dask-jobqueue), or a running cluster (``interaction.dask``).
"""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import zarr

from patchinteract.interaction.maps import dip_score, interaction_map
from patchinteract.stores.chunked import ChunkedStore
from patchinteract.stores.compute import store_with_dask
from patchinteract.stores.specs import PER_IMAGE_SPECS, interaction_chunk, interaction_specs


def _interaction_block(attn_block: np.ndarray, n_prefix_tokens: int, block_info=None) -> np.ndarray:
    first_image = block_info[0]["array-location"][0][0] if block_info else 0
    return interaction_map(attn_block, n_prefix_tokens, first_image=first_image)


def interaction_arrays(attn: da.Array, n_prefix_tokens: int) -> tuple[da.Array, da.Array]:
    """Lazy U (image, N, N) and dip_score (image, N) over a lazy (image, layer, head, T, T) attention."""
    if any(len(c) != 1 for c in attn.chunks[1:]):
        raise ValueError(f"attention must be chunked by image only, got chunks {attn.chunks}")
    n = attn.shape[-1] - n_prefix_tokens
    interaction = attn.map_blocks(
        _interaction_block,
        n_prefix_tokens,
        drop_axis=[1, 2],
        chunks=(attn.chunks[0], (n,), (n,)),
        dtype=np.float32,
        meta=np.empty((0, 0, 0), np.float32),
    )
    scores = interaction.map_blocks(dip_score, drop_axis=2, dtype=np.float32, meta=np.empty((0, 0), np.float32))
    return interaction, scores


def compute_interaction_store(
    attention_path: Path | str,
    out_path: Path | str,
    *,
    dask_mode: str = "threads",
    workers: int = 1,
    address: str | None = None,
    slurm: dict | None = None,
    compression_level: int = 3,
) -> Path:
    """Write ``U`` and ``dip_score`` for every image of an attention store; returns ``out_path``."""
    source = zarr.open_group(attention_path, mode="r")
    attn = source["attn"]
    prefix = int(source.attrs["n_prefix_tokens"])
    n_images = attn.shape[0]
    n = attn.shape[-1] - prefix
    # Written in one go (a rerun starts over), directly in the final layout.
    store = ChunkedStore(
        out_path,
        n_images,
        interaction_chunk(n),
        interaction_specs(n),
        dict(source.attrs),
        compression_level,
        resumable=False,
    )
    for name in PER_IMAGE_SPECS:
        store.array(name)[:] = source[name][:]
    interaction, scores = interaction_arrays(da.from_zarr(attn), prefix)
    # Blocks aligned with the stored chunks, so no two tasks write one chunk.
    interaction = interaction.rechunk({0: store.array("U").chunks[0]})
    scores = scores.rechunk({0: store.array("dip_score").chunks[0]})
    store_with_dask(
        [interaction, scores],
        [store.array("U"), store.array("dip_score")],
        mode=dask_mode,
        workers=workers,
        address=address,
        slurm=slurm,
    )
    return store.finalize()
