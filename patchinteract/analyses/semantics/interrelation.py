"""The weighted patch interrelation θ (Wu et al., eq. 2-4) and the attention focus index (eq. 5), for
batches of attention maps (image, layer, head, query, key) on the patch block.

Every function takes the attention rows of the patch block, ``rows`` (..., N, N) with rows = starting
patches i and columns = target patches j, and the keypoint counts ``counts`` (image, N) of the same
images (keypoints.py).
"""

from __future__ import annotations

import numpy as np

WEIGHTINGS = ("weighted", "unweighted")


def nan_mean(values: np.ndarray, axis: int, where: np.ndarray | None = None) -> np.ndarray:
    """Mean over ``axis`` of the entries that are not NaN (and selected by ``where``); NaN when none are."""
    use = ~np.isnan(values) if where is None else ~np.isnan(values) & where
    total = np.where(use, values, 0).sum(axis=axis, dtype=np.float64)
    count = use.sum(axis=axis)
    return np.divide(total, count, out=np.full(total.shape, np.nan), where=count > 0).astype(np.float32)


def detection_line(rows: np.ndarray, gamma: float) -> np.ndarray:
    """Eq. 2: H̄ = γ · Σ_j a_ij / N for every row, shape (..., 1).

    Summed in float64: a constant row's line is then exactly its value, so every patch is attended at γ = 1.
    """
    if not gamma > 0:
        raise ValueError(f"semantics.gamma must be > 0, got {gamma}")
    return gamma * rows.sum(axis=-1, keepdims=True, dtype=np.float64) / rows.shape[-1]


def attended_patches(rows: np.ndarray, gamma: float) -> np.ndarray:
    """S_i as a boolean (..., N, N): a_ij ≥ H̄ (eq. 2)."""
    return rows >= detection_line(rows, gamma)


def patch_theta(attended: np.ndarray, counts: np.ndarray, weighting: str = "weighted") -> np.ndarray:
    """Eq. 3: θ_i for every starting patch, shape (image, ..., N); NaN where S_i is empty (γ > 1 only).

    weighted: Σ_{j∈S_i, t_j>0} t_j / (|{j ∈ S_i : t_j = 0}| + Σ_{j∈S_i, t_j>0} t_j);
    unweighted: |S_i^Key| / |S_i|. ``attended`` is (image, ..., N, N), ``counts`` (image, N).
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"semantics.weighting must be one of {WEIGHTINGS}, got '{weighting}'")
    is_key = counts > 0
    key_weight = np.where(is_key, counts, 0) if weighting == "weighted" else is_key
    # (image, 1, ..., 1, N, 1): broadcast over the layer and head axes of ``attended``
    shape = (counts.shape[0],) + (1,) * (attended.ndim - 3) + (counts.shape[1], 1)
    attended = attended.astype(np.float32)
    keyed = (attended @ key_weight.astype(np.float32).reshape(shape))[..., 0]
    other = (attended @ (~is_key).astype(np.float32).reshape(shape))[..., 0]
    total = keyed + other
    return np.divide(keyed, total, out=np.full(keyed.shape, np.nan, np.float32), where=total > 0)


def theta_groups(theta: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 4: (θ_KK, θ_NK), the mean θ_i over keypoint and over non-keypoint starting patches.

    ``theta`` is (image, ..., N); NaN for an image without starting patches of that kind.
    θ_KN = 1 − θ_KK and θ_NN = 1 − θ_NK.
    """
    is_key = (counts > 0).reshape(counts.shape[0], *(1,) * (theta.ndim - 2), counts.shape[1])
    return nan_mean(theta, -1, where=is_key), nan_mean(theta, -1, where=~is_key)


def row_focus(rows: np.ndarray) -> np.ndarray:
    """Eq. 5: δ_i, the entropy (natural log) of each row min-max normalised and divided by its sum.

    A constant row counts as uniform (δ = log N, the maximum); 0 · log 0 = 0. Higher = broader attention.
    With s the normalised row and S its sum, δ = log S − Σ_j s_j log s_j / S: no division of the whole
    row, and the zeros of s (its minimum) meet log of the smallest float, so 0 · log 0 = 0 without a mask.
    """
    scaled = rows.astype(np.float32)
    low, high = scaled.min(axis=-1, keepdims=True), scaled.max(axis=-1, keepdims=True)
    span = high - low
    scaled -= low
    scaled *= np.divide(1.0, span, out=np.zeros_like(span), where=span > 0)
    total = scaled.sum(axis=-1)
    logs = np.maximum(scaled, np.finfo(np.float32).tiny)
    np.log(logs, out=logs)
    logs *= scaled
    constant = total == 0  # max = min: uniform
    total = np.where(constant, 1.0, total)
    return np.where(constant, np.log(rows.shape[-1]), np.log(total) - logs.sum(axis=-1) / total).astype(np.float32)


def focus_index(rows: np.ndarray) -> np.ndarray:
    """The attention focus index of each head: the mean of δ_i over its starting patches (eq. 5)."""
    return row_focus(rows).mean(axis=-1)


def semantic_reductions(
    attn: np.ndarray, n_prefix: int, counts: np.ndarray, gamma: float = 1.0, weighting: str = "weighted"
) -> dict[str, np.ndarray]:
    """The semantics store's arrays for a batch: θ_KK, θ_NK, focus index (image, layer, head) and θ_i
    averaged over heads (image, layer, patch), from attention (image, layer, head, T, T)."""
    rows = attn[..., n_prefix:, n_prefix:]
    theta = patch_theta(attended_patches(rows, gamma), counts, weighting)
    theta_kk, theta_nk = theta_groups(theta, counts)
    return {
        "theta_kk": theta_kk,
        "theta_nk": theta_nk,
        "focus_index": focus_index(rows),
        "theta_patch": nan_mean(theta, axis=2),
    }
