"""Model names: the explicit-size ViT or a name in timm's registry.

timm is imported only when a registry name is checked: importing it imports torch and
torchvision (~4 s), which Snakemake would otherwise pay at every start just to validate
the demo's config, whose model is the explicit ``VisionTransformer``.
"""

from __future__ import annotations

# Build timm's VisionTransformer class directly with explicit sizes (the demo).
EXPLICIT_VIT = "VisionTransformer"


def is_known_model(name: str) -> bool:
    if name == EXPLICIT_VIT:
        return True
    import timm

    return timm.is_model(name)


def has_pretrained_weights(name: str) -> bool:
    """Whether timm knows hub weights for ``name`` (with or without a ``.tag``)."""
    if name == EXPLICIT_VIT:
        return False
    import timm

    return bool(timm.list_pretrained(name) or timm.list_pretrained(name + ".*"))
