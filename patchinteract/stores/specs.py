"""The arrays of every store: attention, interaction, masks; one place for their shapes and dtypes
(docs/design.md lists them)."""

from __future__ import annotations

from patchinteract.stores.chunked import ArraySpec, images_per_chunk, rounding_error_bound

ATTENTION_DIMENSIONS = ("image", "layer", "head", "query", "key")


# Stored beside the main arrays of every store, one value per image.
PER_IMAGE_SPECS = {
    "label": ArraySpec((), "int64", ("image",)),
    "prediction": ArraySpec((), "int64", ("image",)),
    "image_id": ArraySpec((), "int64", ("image",)),
}


def attention_shape(model) -> tuple[int, int, int, int]:
    """(layer, head, T, T) of one image's attention, prefix tokens included."""
    from patchinteract.models.vit import n_prefix_tokens, patch_grid  # here: mask and table jobs never load timm

    rows, cols = patch_grid(model)
    tokens = n_prefix_tokens(model) + rows * cols
    return len(model.blocks), model.blocks[0].attn.num_heads, tokens, tokens


def attention_specs(model, mantissa_bits: int | None = None) -> dict[str, ArraySpec]:
    """Arrays of an attention store (``mantissa_bits``: see chunked.rounding_filters)."""
    attention = ArraySpec(attention_shape(model), "float16", ATTENTION_DIMENSIONS, mantissa_bits)
    return {"attn": attention, **PER_IMAGE_SPECS}


def rounding_attributes(mantissa_bits: int | None) -> dict:
    """What an attention store says of its rounding: nothing when lossless; else the bits kept and the
    largest relative error of a stored value (absolute below float16's smallest normal, 2^-14 times it)."""
    if mantissa_bits is None:
        return {}
    return {"mantissa_bits": mantissa_bits, "max_relative_error": rounding_error_bound(mantissa_bits)}


def interaction_specs(n_patches: int) -> dict[str, ArraySpec]:
    """Arrays of an interaction store: U over patch tokens, dip_score, and the per-image arrays."""
    n = n_patches
    return {
        "U": ArraySpec((n, n), "float32", ("image", "query", "key")),
        "dip_score": ArraySpec((n,), "float32", ("image", "patch")),
        **PER_IMAGE_SPECS,
    }


def interaction_chunk(n_patches: int) -> int:
    """Images per chunk of an interaction store: about 16 MiB of U, whatever the attention chunks."""
    return images_per_chunk("auto", interaction_specs(n_patches)["U"].bytes_per_image)


IMAGE_ID = {"image_id": PER_IMAGE_SPECS["image_id"]}


def window_specs(n_patches: int) -> dict[str, ArraySpec]:
    """A window store: boxes [x_l, y_t, x_r, y_b] of every patch, and O of eq. 5 per image."""
    n = n_patches
    return {"window": ArraySpec((n, 4), "int16", ("image", "patch", "box")), "o": ArraySpec((), "int64", ("image",))}


def keep_specs(n_patches: int) -> dict[str, ArraySpec]:
    """A keep store: True for the patches DIP keeps."""
    return {"keep": ArraySpec((n_patches,), "bool", ("image", "patch"))}


def field_specs(n_patches: int) -> dict[str, ArraySpec]:
    """A field store: responsive fields (eq. 6-7), O over kept patches, WinFT's ground truth (box and set)."""
    n = n_patches
    return {
        "field_size": ArraySpec((n,), "int16", ("image", "patch")),
        "tendency": ArraySpec((n, 2), "float32", ("image", "patch", "xy")),
        "centroid_offset": ArraySpec((n, 2), "float32", ("image", "patch", "xy")),
        "o": ArraySpec((), "int64", ("image",)),
        "field_box": ArraySpec((n, 4), "int16", ("image", "patch", "box")),
        "field_members": ArraySpec((n, -(-n // 8)), "uint8", ("image", "patch", "packed_key")),
    }


def winft_figure_specs(n_layers: int, n_patches: int) -> dict[str, ArraySpec]:
    """WinFT's figure store: predicted W per layer and the ground truth w_gt of the first val images."""
    n = n_patches
    return {
        "predicted": ArraySpec((n_layers, n, n), "bool", ("image", "layer", "query", "key")),
        "target": ArraySpec((n, n), "bool", ("image", "query", "key")),
        "image_id": PER_IMAGE_SPECS["image_id"],
    }


def head_attention_specs(
    n_layers: int, n_heads: int, n_prefix: int, grid: tuple[int, int], top_count: int
) -> dict[str, ArraySpec]:
    """The head-attention store (Li et al.): k-hop strength and mean distance per head, the binarised
    patch matrices as top-entry indices, the CLS pattern vectors (with a prefix token), per-image arrays."""
    n = grid[0] * grid[1]
    heads = ("image", "layer", "head")
    specs = {
        "strength": ArraySpec((n_layers, n_heads, max(grid)), "float32", (*heads, "hop")),
        "mean_distance": ArraySpec((n_layers, n_heads), "float32", heads),
        "patch_top": ArraySpec((n_layers, n_heads, top_count), "int32", (*heads, "entry")),
    }
    if n_prefix:
        specs["cls_pattern"] = ArraySpec((n_layers, n_heads, n_prefix + 2 * n), "float16", (*heads, "position"))
    return specs | PER_IMAGE_SPECS


def keypoint_specs(n_patches: int) -> dict[str, ArraySpec]:
    """A keypoint store (Wu et al.): the SIFT keypoint count t of every patch, label and image_id."""
    return {
        "keypoints": ArraySpec((n_patches,), "int32", ("image", "patch")),
        "label": PER_IMAGE_SPECS["label"],
        "image_id": PER_IMAGE_SPECS["image_id"],
    }


def keypoint_figure_specs(view_shape: tuple[int, ...], width: int) -> dict[str, ArraySpec]:
    """The figure images of a keypoint store: their evaluation views, keypoints (x, y, size) NaN-padded, and
    their indices in the store."""
    return {
        "view": ArraySpec(tuple(view_shape), "uint8", ("image", "y", "x", "rgb")),
        "points": ArraySpec((width, 3), "float32", ("image", "keypoint", "point")),
        "index": ArraySpec((), "int64", ("image",)),
        **IMAGE_ID,
    }


def semantics_specs(n_layers: int, n_heads: int, n_patches: int) -> dict[str, ArraySpec]:
    """A semantics store (Wu et al.): θ_KK, θ_NK and the focus index per head, θ_i averaged over heads."""
    heads = ("image", "layer", "head")
    return {
        "theta_kk": ArraySpec((n_layers, n_heads), "float32", heads),
        "theta_nk": ArraySpec((n_layers, n_heads), "float32", heads),
        "focus_index": ArraySpec((n_layers, n_heads), "float32", heads),
        "theta_patch": ArraySpec((n_layers, n_patches), "float32", ("image", "layer", "patch")),
        **PER_IMAGE_SPECS,
    }
