"""Patch interaction map U (eq. 2-3) and the DIP column score, for batches of images.

Two entry points share the functions of the equations. :func:`interaction_map`
takes a NumPy block of a Zarr attention store (float16): it converts the
patch-to-patch block to float32 exactly once, into a buffer reused by each
thread, and works in place from then on, so reading the store, not the
arithmetic, sets the speed (benchmarks/bench_interaction.py).
:func:`interaction_map_on_device` takes the attention a forward pass just
recorded (``attention.store: none``) and computes U on the device that ran the
model, so a GPU does not wait for the CPU.
"""

from __future__ import annotations

import threading
import warnings

import numpy as np
import torch

# Layout of a batch of attention maps: (image, layer, head, query, key).
LAYER_AXIS = 1


# After eq. 2 removes the layer axis: (image, head, query, key).
HEAD_AXIS_AFTER_LAYERS = 1


# float16 storage of 200+ softmax terms rounds each row sum by up to ~1e-3.
ROW_SUM_TOLERANCE = 1e-2


class AttentionValueError(ValueError):
    """Attention that is not a valid softmax output (NaN, inf, rows not summing to 1)."""


def check_row_sums(row_sums: np.ndarray, first_image: int = 0, tolerance: float = ROW_SUM_TOLERANCE) -> None:
    """Raise AttentionValueError unless every row sum (image, layer, head, query) is finite and 1.

    ``first_image`` is the store index of the first image, used in the message.
    """
    bad = ~(np.abs(row_sums - 1.0) <= tolerance)  # NaN compares False, so it is caught
    if bad.any():
        image, layer, head, query = np.argwhere(bad)[0]
        value = row_sums[image, layer, head, query]
        raise AttentionValueError(
            f"attention of image {first_image + image}, layer {layer}, head {head}, query {query} "
            f"sums to {value} (expected 1 +/- {tolerance}); {int(bad.sum())} rows are invalid in "
            f"images {first_image}..{first_image + row_sums.shape[0] - 1}"
        )


def check_attention_rows(attn: np.ndarray, first_image: int = 0, tolerance: float = ROW_SUM_TOLERANCE) -> None:
    """Raise AttentionValueError unless every attention row is finite and sums to 1.

    ``attn`` is (image, layer, head, query, key) over all tokens, prefix included.
    """
    check_row_sums(attn.sum(axis=-1, dtype=np.float32), first_image, tolerance)


_work = threading.local()


def _as_tensor(array: np.ndarray) -> torch.Tensor:
    with warnings.catch_warnings():  # read-only Dask blocks: the tensor is only read
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(array)


def patch_block_float32(attn: np.ndarray, n_prefix_tokens: int) -> np.ndarray:
    """The patch-to-patch block A[..., prefix:, prefix:] as float32, in this thread's work buffer.

    The buffer is reused by the next call in the same thread: a fresh 100 MB
    array per chunk costs more in page faults than the conversion itself, and
    torch's vectorised half-to-float copy is several times faster than NumPy's cast.
    """
    p = n_prefix_tokens
    shape = (*attn.shape[:-2], attn.shape[-2] - p, attn.shape[-1] - p)
    buffer = getattr(_work, "buffer", None)
    if buffer is None or buffer.shape != shape:
        buffer = _work.buffer = np.empty(shape, np.float32)
    torch.from_numpy(buffer).copy_(_as_tensor(attn)[..., p:, p:])
    return buffer


def attention_row_sums(attn: np.ndarray) -> torch.Tensor:
    """Row sums (float32) of float16 attention: torch's half-to-float reduction, faster than NumPy's."""
    return _as_tensor(attn).sum(dim=-1, dtype=torch.float32)


def uncertainty_across_layers(attn_patches: torch.Tensor) -> torch.Tensor:
    """Eq. 2: 𝒰 = (1/l) Σ_i (A_i - E_A)², the population variance over the layer axis.

    ``attn_patches`` is a float32 tensor (image, layer, head, N, N) on any device
    and is overwritten (centred and squared in place) to avoid a second full-size
    temporary. Returns (image, head, N, N).
    """
    if attn_patches.dtype != torch.float32:
        raise TypeError(f"expected a float32 working copy, got {attn_patches.dtype}")
    mean_over_layers = attn_patches.mean(dim=LAYER_AXIS, keepdim=True)
    attn_patches.sub_(mean_over_layers).square_()
    return attn_patches.mean(dim=LAYER_AXIS)


def uncertainty_across_heads(layer_uncertainty: torch.Tensor) -> torch.Tensor:
    """Eq. 3: U = (1/k) Σ_j (𝒰_j - E_𝒰)², the population variance over heads.

    ``layer_uncertainty`` is (image, head, N, N); returns U as (image, N, N).
    """
    return population_variance(layer_uncertainty, HEAD_AXIS_AFTER_LAYERS)


def population_variance(values: torch.Tensor, dim: int) -> torch.Tensor:
    """Mean squared deviation from the mean along ``dim``.

    Spelled out because ``Tensor.var`` over an axis that is not the last one is
    ~14x slower on CPU (a strided Welford pass): it was half of the U stage.
    """
    deviations = values - values.mean(dim=dim, keepdim=True)
    return deviations.square_().mean(dim=dim)


def interaction_map(attn: np.ndarray, n_prefix_tokens: int, first_image: int = 0) -> np.ndarray:
    """U for a batch: eq. 2 then eq. 3 on the patch-to-patch block, float32.

    ``attn`` is (image, layer, head, T, T) with T = prefix + N tokens, any float
    dtype. Rows are checked (finite, summing to 1); prefix tokens are excluded
    afterwards and the patch rows are not renormalised (docs/method.md).
    """
    if attn.ndim != 5:
        raise ValueError(f"attention must be (image, layer, head, query, key); got shape {attn.shape}")
    images, layers, heads, tokens, _ = attn.shape
    n = tokens - n_prefix_tokens
    layer_uncertainty = torch.empty((images, heads, n, n), dtype=torch.float32)
    row_sums = np.empty((images, layers, heads, tokens), np.float32)
    # One (image, head) at a time: its float32 copy (layers x N x N) stays in cache
    # through the passes of eq. 2, instead of streaming the whole chunk through memory.
    for image in range(images):
        for head in range(heads):
            one = attn[image : image + 1, :, head : head + 1]
            block = patch_block_float32(one, n_prefix_tokens)
            row_sums[image, :, head] = attention_row_sums(one)[0, :, 0]
            layer_uncertainty[image, head] = uncertainty_across_layers(torch.from_numpy(block))[0, 0]
    check_row_sums(row_sums, first_image=first_image)
    return uncertainty_across_heads(layer_uncertainty).numpy()


def interaction_map_on_device(
    attn: torch.Tensor, n_prefix_tokens: int, first_image: int = 0, images_per_step: int = 8
) -> tuple[torch.Tensor, torch.Tensor]:
    """(U, dip_score) of a batch of recorded attention, in float32 on the tensor's device.

    ``attn`` is (image, layer, head, T, T) in any float dtype (the recorder's
    float16, so U is that of the stored attention); rows are checked as in
    :func:`interaction_map`. ``images_per_step`` images are converted to float32
    at a time, which bounds the working memory (ViT-B/16: 22 MB per image).
    """
    if attn.ndim != 5:
        raise ValueError(f"attention must be (image, layer, head, query, key); got shape {tuple(attn.shape)}")
    p = n_prefix_tokens
    interaction, row_sums = [], []
    for start in range(0, attn.shape[0], images_per_step):
        block = attn[start : start + images_per_step].float()
        row_sums.append(block.sum(dim=-1).cpu())
        patches = block[..., p:, p:].contiguous()
        del block
        interaction.append(uncertainty_across_heads(uncertainty_across_layers(patches)))
    check_row_sums(torch.cat(row_sums).numpy(), first_image=first_image)
    interaction = torch.cat(interaction)
    return interaction, dip_score(interaction)


def dip_score(interaction: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """DIP score: population variance of each column of U over its N rows.

    Column p of U says how informative patch p is to all others; a low variance
    marks an indiscriminative patch. ``interaction`` is (image, N, N), a NumPy
    array or a tensor on any device; returns (image, N), float32, of the same kind.
    """
    if isinstance(interaction, torch.Tensor):
        return population_variance(interaction, -2)
    return interaction.var(axis=-2, dtype=np.float32)
