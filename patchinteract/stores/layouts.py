"""The arrays of every store: attention, interaction, masks; one place for their shapes and dtypes
(docs/design.md lists them)."""

from __future__ import annotations

from patchinteract.models.vit import n_prefix_tokens, patch_grid
from patchinteract.stores.chunked import ArraySpec, images_per_chunk

ATTENTION_DIMENSIONS = ("image", "layer", "head", "query", "key")


# Stored beside the main arrays of every store, one value per image.
PER_IMAGE_SPECS = {
    "label": ArraySpec((), "int64", ("image",)),
    "prediction": ArraySpec((), "int64", ("image",)),
    "image_id": ArraySpec((), "int64", ("image",)),
}


def attention_shape(model) -> tuple[int, int, int, int]:
    """(layer, head, T, T) of one image's attention, prefix tokens included."""
    rows, cols = patch_grid(model)
    tokens = n_prefix_tokens(model) + rows * cols
    return len(model.blocks), model.blocks[0].attn.num_heads, tokens, tokens


def attention_specs(model) -> dict[str, ArraySpec]:
    """Arrays of an attention store."""
    return {"attn": ArraySpec(attention_shape(model), "float16", ATTENTION_DIMENSIONS), **PER_IMAGE_SPECS}


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
