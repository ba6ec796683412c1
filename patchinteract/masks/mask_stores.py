"""Mask stores per α (windows), per β (kept tokens) and per (α, β) (responsive fields).

Each is a small Zarr group computed chunk by chunk from an interaction store
(``U``, ``dip_score``), in the same image order. Layouts (docs/design.md):

- window store: ``window`` (image, patch, 4) int16 inclusive [x_l, y_t, x_r, y_b];
  ``o`` (image) int64, O of eq. 5 over all patches; attribute ``alpha``.
- keep store: ``keep`` (image, patch) bool, True for kept patches; attribute ``beta``.
- field store: ``field_size`` (image, patch) int16, ``tendency`` and
  ``centroid_offset`` (image, patch, 2) float32 as (dx, dy), ``o`` (image) int64
  counting kept patches only; ``field_box`` (image, patch, 4) int16, the inclusive
  box of S_p, and ``field_members`` (image, patch, ⌈N/8⌉) uint8, S_p as bits
  (np.packbits along the key axis): WinFT's ground truth (eq. 11, box or set);
  attributes ``alpha``, ``beta``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import zarr

from patchinteract.masks.fields import (
    responsive_field_members,
    responsive_field_offset,
    responsive_field_size,
    responsive_field_tendency,
)
from patchinteract.masks.tokens import kept_patches
from patchinteract.masks.windows import (
    attention_windows,
    bounding_boxes,
    top_interactions,
    window_interactions,
    window_members,
)
from patchinteract.stores.chunked import ArraySpec, ChunkedStore
from patchinteract.stores.specs import IMAGE_ID, field_specs, keep_specs, window_specs

log = logging.getLogger(__name__)


def _map_interaction(
    interaction_path: Path | str,
    out_path: Path | str,
    specs: dict[str, ArraySpec],
    attributes: dict,
    compute: Callable[[np.ndarray, np.ndarray, slice], dict[str, np.ndarray]],
    compression_level: int,
) -> Path:
    """Apply ``compute(U, dip_score, images)`` chunk by chunk of the interaction store into a new store."""
    source = zarr.open_group(interaction_path, mode="r")
    u, scores = source["U"], source["dip_score"]
    n_images, chunk = u.shape[0], u.chunks[0]
    store = ChunkedStore(
        out_path, n_images, chunk, specs | IMAGE_ID, dict(source.attrs) | attributes, compression_level, resumable=False
    )
    store.array("image_id")[:] = source["image_id"][:]
    start_time = time.perf_counter()
    for start in range(0, n_images, chunk):
        images = slice(start, min(start + chunk, n_images))
        for name, values in compute(u[images], scores[images], images).items():
            store.array(name)[images] = values
    log.info("%d images in %.1f s", n_images, time.perf_counter() - start_time)
    return store.finalize()


def grid_of(interaction_path: Path | str) -> tuple[int, int]:
    rows, cols = zarr.open_group(interaction_path, mode="r").attrs["grid"]
    return int(rows), int(cols)


def write_window_store(interaction_path, out_path, alpha: float, compression_level: int = 1) -> Path:
    """Windows of every patch (eq. 4) and O (eq. 5) of every image for one α."""
    grid = grid_of(interaction_path)
    n = grid[0] * grid[1]
    specs = window_specs(n)

    def compute(u, _scores, _images):
        windows = attention_windows(u, alpha, grid)
        return {"window": windows, "o": window_interactions(windows)}

    return _map_interaction(interaction_path, out_path, specs, {"alpha": alpha}, compute, compression_level)


def write_keep_store(interaction_path, out_path, beta: float, compression_level: int = 1) -> Path:
    """Kept-token masks (DIP) of every image for one β."""
    n = int(np.prod(grid_of(interaction_path)))
    specs = keep_specs(n)
    return _map_interaction(
        interaction_path,
        out_path,
        specs,
        {"beta": beta},
        lambda _u, scores, _images: {"keep": kept_patches(scores, beta)},
        compression_level,
    )


def write_field_store(interaction_path, keep_path, out_path, alpha: float, beta: float, compression_level: int = 1):
    """Responsive fields (eq. 6-7) and O over kept patches for one (α, β)."""
    grid = grid_of(interaction_path)
    n = grid[0] * grid[1]
    keep_all = zarr.open_group(keep_path, mode="r")["keep"]
    specs = field_specs(n)

    def compute(u, _scores, images):
        keep = keep_all[images]
        members = window_members(top_interactions(u, alpha))
        field = responsive_field_members(members, keep)
        windows = bounding_boxes(members, grid)  # eq. 4 from the same selection
        return {
            "field_size": responsive_field_size(field),
            "tendency": responsive_field_tendency(field, grid),
            "centroid_offset": responsive_field_offset(field, grid),
            "o": window_interactions(windows, keep),
            "field_box": bounding_boxes(field, grid),
            "field_members": np.packbits(field, axis=-1),
        }

    return _map_interaction(
        interaction_path, out_path, specs, {"alpha": alpha, "beta": beta}, compute, compression_level
    )
