"""Attention strength over k-hop neighbours (Li et al., TVCG 2023, Sec. 5.3, eq. 7), its entropy, and the
mean attention distance, for batches of attention maps.

Both per-head measures are weighted sums of the patch-to-patch block, so one
matrix product with a fixed (N·N, K + 1) weight matrix computes them for every
image, layer and head of a batch at once.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from patchinteract.coordinates import grid_xy


def chebyshev_hops(grid: tuple[int, int]) -> np.ndarray:
    """(N, N) hop count between query and key patch: max(|Δrow|, |Δcol|) (the k of the k-hop ring)."""
    col, row = grid_xy(grid)
    return np.maximum(np.abs(row[:, None] - row[None, :]), np.abs(col[:, None] - col[None, :]))


def n_hops(grid: tuple[int, int]) -> int:
    """Length of the strength vector: k = 0 ... max(rows, cols) - 1."""
    return max(grid)


@cache
def strength_weights(grid: tuple[int, int]) -> np.ndarray:
    """(N·N, K) weights w such that attention (…, N·N) @ w is the strength vector s (eq. 7).

    s_k = mean over the patches whose k-ring is not empty of (sum of the row over the ring) / (ring size),
    so entry (q, key, k) is 1 / (ring size of q at k) / (number of patches with a non-empty ring k)
    where key lies on the ring, else 0.
    """
    hops = chebyshev_hops(grid)
    n, k = hops.shape[0], n_hops(grid)
    on_ring = hops[:, :, None] == np.arange(k)  # (q, key, k)
    ring_size = on_ring.sum(axis=1)  # (q, k)
    with_ring = (ring_size > 0).sum(axis=0)  # (k,)
    weights = on_ring / np.maximum(ring_size, 1)[:, None, :] / with_ring
    return weights.reshape(n * n, k)


@cache
def distance_weights(grid: tuple[int, int]) -> np.ndarray:
    """(N·N,) weights: Euclidean query-key distance in patches, divided by N (the mean over queries)."""
    col, row = grid_xy(grid)
    distance = np.hypot(row[:, None] - row[None, :], col[:, None] - col[None, :])
    return (distance / len(row)).reshape(-1)


def head_measures(attn: np.ndarray, n_prefix: int, grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Strength vectors s (eq. 7, (…, K)) and mean attention distances ((…), in patches) of attention
    maps (…, T, T) over all tokens. Computed on the patch block, rows not renormalised after the prefix
    columns are removed (as for U)."""
    n = grid[0] * grid[1]
    patches = np.ascontiguousarray(attn[..., n_prefix:, n_prefix:], dtype=np.float32).reshape(*attn.shape[:-2], n * n)
    weights = np.concatenate([strength_weights(grid), distance_weights(grid)[:, None]], axis=1).astype(np.float32)
    measures = patches @ weights
    return measures[..., :-1], measures[..., -1]


def strength_entropy(strength: np.ndarray) -> np.ndarray:
    """Entropy of s / sum(s) with the natural log, divided by log K so that it lies in [0, 1] (Fig. 8).

    Low: the head's attention concentrates on a few hop distances (e.g. itself); high: spread over all.
    """
    k = strength.shape[-1]
    if k < 2:
        return np.zeros(strength.shape[:-1], np.float32)
    p = strength / np.maximum(strength.sum(axis=-1, keepdims=True), np.finfo(np.float32).tiny)
    terms = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return (-terms.sum(axis=-1) / np.log(k)).astype(np.float32)
