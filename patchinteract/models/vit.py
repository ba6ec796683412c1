"""Vision Transformers from timm: creation by name or explicit sizes, their patch grid, the device.

Importing this module runs ``patchinteract/__init__.py`` first, which installs the
torchvision compatibility shim before ``timm`` is imported here.
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch

from patchinteract.data.manifest import number_of_classes, read_manifest
from patchinteract.models.families import check_supported, instantiate
from patchinteract.models.weights import load_weights


def create_vit(
    name: str,
    img_size: int,
    patch_size: int,
    num_classes: int | None,
    model_args: dict | None = None,
    pretrained: bool = False,
) -> timm.models.VisionTransformer:
    """A timm ViT by registry name, or ``VisionTransformer`` with explicit ``model_args``.

    ``num_classes=None`` keeps the model's own head (for fetching pretrained weights).
    """
    model_args = dict(model_args or {})
    if num_classes is not None:
        model_args["num_classes"] = num_classes
    model = instantiate(name, pretrained=pretrained, img_size=img_size, patch_size=patch_size, **model_args)
    check_supported(model, name)
    return model


def patch_grid(model: timm.models.VisionTransformer) -> tuple[int, int]:
    """(rows, cols) of the patch grid."""
    rows, cols = model.patch_embed.grid_size
    return int(rows), int(cols)


def n_prefix_tokens(model: timm.models.VisionTransformer) -> int:
    """Tokens before the patches (CLS, registers, distillation token)."""
    return int(model.num_prefix_tokens)


def build_model(settings: dict, num_classes: int, attn_layer: type | None = None):
    """The ViT of ``settings`` (grid.model_settings: model, img_size, patch_size, model_args);
    ``attn_layer`` (WinFT's) replaces the attention of every block by its variant of the block's attention
    class (``attn_layer.variants``): a subclass with no parameter of its own, so weights and keys stay."""
    model_args = settings.get("model_args") or {}
    model = create_vit(settings["model"], settings["img_size"], settings["patch_size"], num_classes, model_args)
    if attn_layer is not None:
        for block in model.blocks:
            block.attn.__class__ = attn_layer.variants[type(block.attn)]
    return model


def load_baseline(settings: dict, weights: str | Path, manifest: str | Path):
    """The baseline ViT of ``settings`` with its weights, sized for the manifest's classes."""
    table, _root = read_manifest(manifest)
    model = build_model(settings, number_of_classes(table))
    load_weights(model, weights)
    return model.eval()


def logits_from_tokens(vit, tokens: torch.Tensor) -> torch.Tensor:
    """Logits from the output of the last block."""
    return vit.forward_head(vit.norm(tokens))
