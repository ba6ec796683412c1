"""Patch interaction map U (eq. 2-3) and the DIP column score, for batches of images.

All functions take batched NumPy arrays with the image axis first. Attention is
stored as float16; the kernels convert the patch-to-patch block to float32
exactly once and then work in place, so memory traffic, not arithmetic, sets
the speed (see benchmarks/bench_interaction.py).
"""

from __future__ import annotations

import numpy as np

# Layout of a batch of attention maps: (image, layer, head, query, key).
LAYER_AXIS = 1
# After eq. 2 removes the layer axis: (image, head, query, key).
HEAD_AXIS_AFTER_LAYERS = 1
# float16 storage of 200+ softmax terms rounds each row sum by up to ~1e-3.
ROW_SUM_TOLERANCE = 1e-2


class AttentionValueError(ValueError):
    """Attention that is not a valid softmax output (NaN, inf, rows not summing to 1)."""


def check_attention_rows(attn: np.ndarray, first_image: int = 0, tolerance: float = ROW_SUM_TOLERANCE) -> None:
    """Raise AttentionValueError unless every attention row is finite and sums to 1.

    ``attn`` is (image, layer, head, query, key) over all tokens, prefix included.
    ``first_image`` is the index of ``attn[0]`` in the store, used in the message.
    """
    row_sums = attn.sum(axis=-1, dtype=np.float32)
    bad = ~(np.abs(row_sums - 1.0) <= tolerance)  # NaN compares False, so it is caught
    if bad.any():
        image, layer, head, query = np.argwhere(bad)[0]
        value = row_sums[image, layer, head, query]
        raise AttentionValueError(
            f"attention of image {first_image + image}, layer {layer}, head {head}, query {query} "
            f"sums to {value} (expected 1 +/- {tolerance}); {int(bad.sum())} rows are invalid in "
            f"images {first_image}..{first_image + attn.shape[0] - 1}"
        )


def patch_block_float32(attn: np.ndarray, n_prefix_tokens: int) -> np.ndarray:
    """The patch-to-patch block A[..., prefix:, prefix:] as a fresh float32 array (one copy)."""
    return attn[..., n_prefix_tokens:, n_prefix_tokens:].astype(np.float32)


def uncertainty_across_layers(attn_patches: np.ndarray) -> np.ndarray:
    """Eq. 2: 𝒰 = (1/l) Σ_i (A_i - E_A)², the population variance over the layer axis.

    ``attn_patches`` is float32 (image, layer, head, N, N) and is overwritten
    (centred and squared in place) to avoid a second full-size temporary.
    Returns (image, head, N, N).
    """
    if attn_patches.dtype != np.float32:
        raise TypeError(f"expected a float32 working copy, got {attn_patches.dtype}")
    mean_over_layers = attn_patches.mean(axis=LAYER_AXIS, keepdims=True)
    np.subtract(attn_patches, mean_over_layers, out=attn_patches)
    np.square(attn_patches, out=attn_patches)
    return attn_patches.mean(axis=LAYER_AXIS)


def uncertainty_across_heads(layer_uncertainty: np.ndarray) -> np.ndarray:
    """Eq. 3: U = (1/k) Σ_j (𝒰_j - E_𝒰)², the population variance over heads.

    ``layer_uncertainty`` is (image, head, N, N); returns U as (image, N, N).
    """
    return layer_uncertainty.var(axis=HEAD_AXIS_AFTER_LAYERS, dtype=np.float32)


def interaction_map(attn: np.ndarray, n_prefix_tokens: int, first_image: int = 0) -> np.ndarray:
    """U for a batch: eq. 2 then eq. 3 on the patch-to-patch block, float32.

    ``attn`` is (image, layer, head, T, T) with T = prefix + N tokens, any float
    dtype. Rows are checked first (finite, summing to 1); prefix tokens are
    excluded afterwards and the patch rows are not renormalised (PAPER_NOTES).
    """
    if attn.ndim != 5:
        raise ValueError(f"attention must be (image, layer, head, query, key); got shape {attn.shape}")
    check_attention_rows(attn, first_image=first_image)
    return uncertainty_across_heads(uncertainty_across_layers(patch_block_float32(attn, n_prefix_tokens)))


def dip_score(interaction: np.ndarray) -> np.ndarray:
    """DIP score: population variance of each column of U over its N rows.

    Column p of U says how informative patch p is to all others; a low variance
    marks an indiscriminative patch. ``interaction`` is (image, N, N); returns
    (image, N), float32.
    """
    return interaction.var(axis=-2, dtype=np.float32)
