"""The model families the stages run, one adapter each, and the check that refuses every other model.

Every stage asks a model the same questions: its patch grid and prefix tokens, the attention modules
whose softmax it captures, masks (AWD), prunes by head or replaces (WinFT), the tokens entering block 0
with what every block needs beside them (rotary position embeddings), and how patch tokens are dropped
(DIP, masking by θ, the MAE) while each kept token keeps its own position. :class:`ViTFamily` answers
them for timm's ``VisionTransformer`` (an absolute position embedding added once), :class:`EvaFamily`
for timm's ``Eva`` (DINOv3, EVA-02, the RoPE ViTs: rotary embeddings applied to q and k in every
block). Anything else is refused by :func:`unsupported_reason`, at config time on the meta device
(:func:`model_problem`: no weights, milliseconds) and where a job builds the model.
"""

from __future__ import annotations

import contextlib
import warnings

import timm
import torch
from timm.layers import Attention, AttentionRope
from timm.models.eva import Eva, EvaAttention, EvaBlock
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn

from patchinteract.models.registry import EXPLICIT_VIT

SUPPORTED = (
    "timm's VisionTransformer (and its subclasses, e.g. DeiT's distilled ViT) with its standard Block and "
    "Attention, and timm's Eva (DINOv3, EVA-02, the RoPE ViTs) with EvaBlock"
)


def kept_token_index(keep: torch.Tensor, n_prefix: int) -> torch.Tensor:
    """(image, n_prefix + kept) token positions: the prefix tokens, then the kept patches in row-major order.

    Every image must keep as many patches (DIP keeps ⌊β·N⌋-based counts), so the tokens form one batch.
    """
    kept = keep.sum(dim=1)
    if kept.numel() and not bool((kept == kept[0]).all()):
        counts = kept.unique().tolist()
        raise ValueError(f"every image must keep as many patches to compute on kept tokens, got {counts}")
    patches = keep.nonzero()[:, 1].view(keep.shape[0], -1) + n_prefix
    prefix = torch.arange(n_prefix, device=keep.device).expand(keep.shape[0], -1)
    return torch.cat([prefix, patches], dim=1)


def gathered_tokens(tokens: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``tokens`` (image, T, C) at ``index`` (image, T_kept)."""
    return tokens.gather(1, index.to(tokens.device)[..., None].expand(-1, -1, tokens.shape[-1]))


class ViTFamily:
    """timm's ``VisionTransformer``: the position embedding is added once, before the blocks."""

    block_classes = (Block,)
    attention_classes = (Attention,)

    @staticmethod
    def rotary(model: nn.Module) -> bool:
        return False

    @staticmethod
    def stem(model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, list[dict]]:
        """Tokens entering block 0 (patch embedding, prefix tokens, position embedding, pre-norm) and the
        keyword arguments each block takes beside them (none)."""
        tokens = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(images))))
        return tokens, [{}] * len(model.blocks)

    @staticmethod
    def random_patch_dropout(model: nn.Module) -> bool:
        return not isinstance(model.patch_drop, nn.Identity)

    @staticmethod
    @contextlib.contextmanager
    def kept_patches(model: nn.Module, keep: torch.Tensor):
        """timm has no token-selection hook outside training (its PatchDropout is random): a forward hook on
        ``patch_drop`` gathers the kept tokens after the position embedding."""
        index = kept_token_index(keep, int(model.num_prefix_tokens))
        handle = model.patch_drop.register_forward_hook(lambda _module, _args, tokens: gathered_tokens(tokens, index))
        try:
            yield
        finally:
            handle.remove()


class KeptPatches(nn.Module):
    """Eva's patch-dropout slot filled with a fixed choice: the kept tokens and the kept patches' indices, from
    which Eva's own ``_pos_embed`` gathers each kept token's rotary embedding at its grid position."""

    def __init__(self, index: torch.Tensor, n_prefix: int):
        super().__init__()
        self.index, self.n_prefix = index, n_prefix

    def forward(self, tokens: torch.Tensor):
        index = self.index.to(tokens.device)
        return gathered_tokens(tokens, index), index[:, self.n_prefix :] - self.n_prefix


class EvaFamily:
    """timm's ``Eva``: an optional absolute position embedding, and rotary embeddings applied to the patch
    tokens' queries and keys in every block (prefix tokens unrotated)."""

    block_classes = (EvaBlock,)
    attention_classes = (EvaAttention, AttentionRope)

    @staticmethod
    def rotary(model: nn.Module) -> bool:
        return model.rope is not None

    @staticmethod
    def stem(model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, list[dict]]:
        """Tokens entering block 0 and each block's rotary embedding (per block for mixed RoPE), as Eva's
        ``forward_features`` passes them."""
        tokens, rope = model._pos_embed(model.patch_embed(images))
        tokens = model.norm_pre(tokens)
        if rope is not None and getattr(model, "rope_mixed", False):
            return tokens, [{"rope": rope[i]} for i in range(len(model.blocks))]
        return tokens, [{"rope": rope}] * len(model.blocks)

    @staticmethod
    def random_patch_dropout(model: nn.Module) -> bool:
        return model.patch_drop is not None

    @staticmethod
    @contextlib.contextmanager
    def kept_patches(model: nn.Module, keep: torch.Tensor):
        n_prefix = int(model.num_prefix_tokens)
        previous = model.patch_drop
        model.patch_drop = KeptPatches(kept_token_index(keep, n_prefix), n_prefix)
        try:
            yield
        finally:
            model.patch_drop = previous


FAMILIES = {VisionTransformer: ViTFamily, Eva: EvaFamily}


def family_of(model: nn.Module) -> type[ViTFamily] | type[EvaFamily] | None:
    """The adapter of ``model``'s class (or of the class it derives from); None for any other model."""
    return next((family for cls, family in FAMILIES.items() if isinstance(model, cls)), None)


def stem(model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, list[dict]]:
    """Tokens entering block 0 of ``model`` and the keyword arguments of each block
    (``block(tokens, **kwargs[i])`` runs block i as the model does)."""
    return family_of(model).stem(model, images)


@contextlib.contextmanager
def dropped_tokens(model: nn.Module, keep: torch.Tensor):
    """Remove the patch tokens that ``keep`` (image, N) marks False, after the position embedding, while the
    context is open; prefix tokens always stay, and every kept token keeps its own position (its absolute
    embedding was added before, its rotary embedding is gathered with it). Every image must keep as many
    patches (the tokens form one batch)."""
    with family_of(model).kept_patches(model, keep):
        yield


def attention_classes() -> tuple[type, ...]:
    """Every attention module class whose softmax the stages capture, mask and prune."""
    return tuple(cls for family in FAMILIES.values() for cls in family.attention_classes)


def unsupported_reason(model: torch.nn.Module) -> str | None:
    """Why the stages cannot run ``model``; None when they can."""
    family = family_of(model)
    if family is None:
        return f"builds timm's {type(model).__name__} (not VisionTransformer or Eva)"
    blocks = {type(block).__name__ for block in model.blocks if type(block) not in family.block_classes}
    if blocks:
        return f"builds a {type(model).__name__} whose blocks are {', '.join(sorted(blocks))}"
    attentions = {
        type(block.attn).__name__ for block in model.blocks if not isinstance(block.attn, family.attention_classes)
    }
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
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
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
