"""Which timm models the stages run, decided from the model's structure before any job.

Every stage asks a model the same questions (its patch grid, its prefix tokens, the attention
module it captures, masks, prunes or replaces, how tokens are dropped), answered today for
timm's ``VisionTransformer`` built of its standard ``Block`` with ``Attention``. Anything else
(parallel or post-norm blocks, Eva, ResNets, Swin, ...) is refused by :func:`unsupported_reason`,
at config time on the meta device (:func:`model_problem`: no weights, milliseconds) and again
where a job builds the model (:func:`check_supported`).
"""

from __future__ import annotations

import contextlib
import warnings

import timm
import torch
from timm.layers import Attention
from timm.models.vision_transformer import Block, VisionTransformer

from patchinteract.models.registry import EXPLICIT_VIT

SUPPORTED = (
    "timm's VisionTransformer (and its subclasses, e.g. DeiT's distilled ViT) whose blocks are timm's "
    "standard Block with Attention"
)


def unsupported_reason(model: torch.nn.Module) -> str | None:
    """Why the stages cannot run ``model``; None when they can."""
    if not isinstance(model, VisionTransformer):
        return f"builds timm's {type(model).__name__} (not VisionTransformer)"
    blocks = {type(block).__name__ for block in model.blocks if type(block) is not Block}
    if blocks:
        return f"builds a {type(model).__name__} whose blocks are {', '.join(sorted(blocks))}"
    attentions = {type(block.attn).__name__ for block in model.blocks if not isinstance(block.attn, Attention)}
    if attentions:
        return f"builds a {type(model).__name__} whose attention is {', '.join(sorted(attentions))}"
    return None


def check_supported(model: torch.nn.Module, name: str) -> None:
    """Raise ValueError naming ``model`` (built as ``name``) and what the stages run, if they cannot run it."""
    reason = unsupported_reason(model)
    if reason:
        raise ValueError(f"model '{name}' {reason}; the stages run {SUPPORTED}")


def instantiate(name: str, pretrained: bool = False, layer_norm_eps: float | None = None, **kwargs) -> torch.nn.Module:
    """``name`` (the explicit-size VisionTransformer or a timm registry name) built by timm.

    ``layer_norm_eps`` (a model_args key of this project: timm's ViT takes no epsilon) sets every
    LayerNorm's, e.g. 1e-12 for ViTs converted from Hugging Face.
    """
    if name == EXPLICIT_VIT:
        model = VisionTransformer(**kwargs)
    else:
        model = timm.create_model(name, pretrained=pretrained, **kwargs)
    if layer_norm_eps is not None:
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.eps = layer_norm_eps
    return model


def model_problem(settings: dict) -> str | None:
    """What is wrong with the model of ``settings`` (model, img_size, patch_size, model_args), found by
    building it on the meta device; None when the stages can run it."""
    name, args = settings["model"], dict(settings.get("model_args") or {})
    sizes = {"img_size": settings["img_size"], "patch_size": settings["patch_size"]}
    with torch.device("meta"), warnings_silenced():
        try:
            model = instantiate(name, **sizes, **args)
        except TypeError as error:
            # A model that takes no image or patch size is no ViT: build it bare to name its class.
            try:
                bare = instantiate(name)
            except Exception:  # noqa: BLE001  (the first error is the one to report)
                bare = None
            if bare is not None and unsupported_reason(bare):
                return f"'{name}' {unsupported_reason(bare)}; the stages run {SUPPORTED}"
            return f"'{name}' cannot be built with model_args {args}: {error}"
        except Exception as error:  # noqa: BLE001  (timm raises many kinds for bad arguments)
            return f"'{name}' cannot be built with img_size {sizes['img_size']}, patch_size {sizes['patch_size']}" + (
                f" and model_args {args}: {error}" if args else f": {error}"
            )
    reason = unsupported_reason(model)
    return f"'{name}' {reason}; the stages run {SUPPORTED}" if reason else None


@contextlib.contextmanager
def warnings_silenced():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
