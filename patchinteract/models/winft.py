"""WinFT: the window-free transformer (eq. 8-13), trained to predict its own attention windows.

Every block's attention predicts a patch-to-patch mask from its own queries
and keys (eq. 8-9) and attends under it (eq. 10). The prediction is supervised
by the responsive fields of the masks stage (eq. 11-12), so no mask is needed
at inference. The blocks reuse the parameters of timm's modules, so the
weights of any timm ViT load unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from timm.layers import Attention, AttentionRope, apply_rot_embed_cat
from timm.models.eva import EvaAttention
from torch import nn

from patchinteract.models.masked import window_attention_mask
from patchinteract.models.vit import n_prefix_tokens, patch_grid

MASK_MODES = ("multiply", "neg_inf")
TARGETS = ("box", "set")


def window_logits(q: torch.Tensor, k: torch.Tensor, n_prefix: int) -> torch.Tensor:
    """Eq. 8's argument (1/k) Σ_h Q_h K_hᵀ over the patch tokens, as one full-width product.

    ``q``, ``k`` are (image, head, T, d); returns (image, N, N) float32. Computed
    outside autocast: in bfloat16 the sigmoid of eq. 8 is exactly 1 above a logit
    of about 6.5, so thresholds and the loss of eq. 12 would lose their gradient.
    """
    images, heads, tokens, dim = q.shape
    with torch.autocast(q.device.type, enabled=False):
        q_full = q[:, :, n_prefix:].float().transpose(1, 2).reshape(images, tokens - n_prefix, heads * dim)
        k_full = k[:, :, n_prefix:].float().transpose(1, 2).reshape(images, tokens - n_prefix, heads * dim)
        return q_full @ k_full.transpose(1, 2) / heads


def threshold_windows(scores: torch.Tensor) -> torch.Tensor:
    """Eq. 9: W_ij = 1 where w'_ij exceeds the mean of its row, and always W_ii = 1.

    The forced diagonal lets every patch attend to itself, so no row is empty
    (a row of equal w' would otherwise mask every key). A hard threshold: no gradient.
    """
    diagonal = torch.eye(scores.shape[-1], dtype=torch.bool, device=scores.device)
    return ((scores > scores.mean(dim=-1, keepdim=True)) | diagonal).detach()


def full_window(windows: torch.Tensor, n_prefix: int) -> torch.Tensor:
    """W over all tokens: the patch block from ``windows``, prefix rows and columns 1. (image, T, T) bool."""
    images, n, _ = windows.shape
    full = torch.ones(images, n_prefix + n, n_prefix + n, dtype=torch.bool, device=windows.device)
    full[:, n_prefix:, n_prefix:] = windows
    return full


def window_free_attention(
    attention: nn.Module, x: torch.Tensor, n_prefix: int, mask_mode: str, rope: torch.Tensor | None = None
):
    """Eq. 10 with ``attention``'s parameters (timm's or Eva's attention; ``rope``: Eva's rotary embedding of
    the patch tokens): (output, logits of w', W), both (image, N, N).

    ``multiply`` is the printed A' = Softmax(QKᵀ/√d ∗ W): masked logits become 0
    and stay in the softmax. ``neg_inf`` excludes them (through SDPA).
    """
    images, tokens, channels = x.shape
    q, k, v = query_key_value(attention, x, rope)
    logits = window_logits(q, k, n_prefix)
    windows = threshold_windows(torch.sigmoid(logits))
    allowed = full_window(windows, n_prefix)[:, None]  # (image, 1, T, T)
    if mask_mode == "neg_inf":
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    elif mask_mode == "multiply":
        attention_logits = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
        out = (attention_logits * allowed).softmax(dim=-1) @ v
    else:
        raise ValueError(f"winft mask_mode must be one of {MASK_MODES}, got '{mask_mode}'")
    out = attention.norm(out.transpose(1, 2).reshape(images, tokens, -1))
    if getattr(attention, "gate", None) is not None:  # Eva's gated attention
        out = out * attention.gate(x).sigmoid()
    return attention.proj_drop(attention.proj(out)), logits, windows


def query_key_value(attention: nn.Module, x: torch.Tensor, rope: torch.Tensor | None = None):
    """q, k, v (image, head, T, d) of ``x`` as ``attention`` computes them: timm's Attention, or Eva's (separate
    q and v biases, separate projections, rotary embeddings applied to the patch tokens' q and k)."""
    images, tokens, _ = x.shape
    heads = attention.num_heads
    if getattr(attention, "qkv", None) is None:
        if getattr(attention, "num_kv_groups", 1) != 1:
            raise ValueError("WinFT needs one key per query head (grouped-query attention is not supported)")
        q, k, v = (
            projection(x).reshape(images, tokens, heads, -1).transpose(1, 2)
            for projection in (attention.q_proj, attention.k_proj, attention.v_proj)
        )
    else:
        bias = attention.qkv.bias
        if getattr(attention, "q_bias", None) is not None:
            bias = torch.cat((attention.q_bias, attention.k_bias, attention.v_bias))
        qkv = F.linear(x, attention.qkv.weight, bias).reshape(images, tokens, 3, heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
    q, k = attention.q_norm(q), attention.k_norm(k)
    if rope is not None:
        prefix, half = attention.num_prefix_tokens, getattr(attention, "rotate_half", False)
        q = torch.cat([q[:, :, :prefix], apply_rot_embed_cat(q[:, :, prefix:], rope, half=half)], dim=2).type_as(v)
        k = torch.cat([k[:, :, :prefix], apply_rot_embed_cat(k[:, :, prefix:], rope, half=half)], dim=2).type_as(v)
    return q, k, v


def window_target(target: torch.Tensor, grid: tuple[int, int], kind: str) -> torch.Tensor:
    """Eq. 11's w_gt (image, N, N) from compact fields: boxes (image, N, 4) or packed members (image, N, ⌈N/8⌉)."""
    n = grid[0] * grid[1]
    if kind == "box":
        return window_attention_mask(target, grid, 0)[:, 0]
    if kind == "set":
        bits = (target[..., None].to(torch.int32) >> torch.arange(7, -1, -1, device=target.device)) & 1
        return bits.flatten(-2)[..., :n].bool()  # np.packbits order: most significant bit first
    raise ValueError(f"winft target must be one of {TARGETS}, got '{kind}'")


def window_bce(logits: list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """Eq. 12: −(1/N²) Σ [w_gt log w' + (1 − w_gt) log(1 − w')] per layer, averaged over layers.

    From the logits of eq. 8 in float32 and outside autocast: CUDA autocast refuses
    ``binary_cross_entropy`` on probabilities, and the logits form never saturates.
    """
    with torch.autocast(target.device.type, enabled=False):
        target = target.float()
        return torch.stack([F.binary_cross_entropy_with_logits(x.float(), target) for x in logits]).mean()


def window_interaction_count(windows: list[torch.Tensor]) -> torch.Tensor:
    """WinFT's O: the number of ones of W over the N×N block, averaged over layers. (image,)"""
    return torch.stack([w.flatten(1).sum(dim=1) for w in windows]).float().mean(dim=0)


def window_iou(windows: list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """IoU of W and w_gt per image, averaged over layers. (image,)"""
    target = target.bool()
    ious = [(w & target).flatten(1).sum(1) / (w | target).flatten(1).sum(1).clamp(min=1) for w in windows]
    return torch.stack(ious).float().mean(dim=0)


class WindowFree:
    """Makes an attention class window-free (eq. 8-10): mixed into a subclass of timm's Attention or Eva's
    attentions that adds no parameter, so the weights of any ViT load unchanged. After each forward,
    ``logits`` holds eq. 8's argument and ``windows`` W, both (image, N, N). :class:`WindowFreeViT` sets
    ``n_prefix`` and ``mask_mode``."""

    n_prefix = 1
    mask_mode = "multiply"

    def forward(self, x, rope=None, attn_mask=None, is_causal: bool = False):
        if attn_mask is not None or is_causal:
            raise ValueError("WinFT predicts its own attention mask; it takes none")
        out, self.logits, self.windows = window_free_attention(self, x, self.n_prefix, self.mask_mode, rope)
        return out


class WindowFreeAttention(WindowFree, Attention):
    """timm's Attention made window-free: the attention layer of a WinFT ViT (``models.vit.build_model``
    with ``attn_layer``), for VisionTransformer blocks and, through :attr:`variants`, Eva's."""

    variants: dict[type, type] = {}


class WindowFreeEvaAttention(WindowFree, EvaAttention):
    """Eva's attention made window-free (eq. 8 on the rotated q and k)."""


class WindowFreeRopeAttention(WindowFree, AttentionRope):
    """timm's AttentionRope (the RoPE ViTs' Eva blocks) made window-free."""


# The window-free variant of each attention class a block may have.
WindowFreeAttention.variants = {
    Attention: WindowFreeAttention,
    EvaAttention: WindowFreeEvaAttention,
    AttentionRope: WindowFreeRopeAttention,
}


class WindowFreeViT(nn.Module):
    """A timm ViT built with ``attn_layer=WindowFreeAttention``: every attention is window-free (eq. 8-10).

    ``forward(images)`` returns logits (no mask is needed at inference);
    ``forward(images, target)`` (compact ground-truth fields, training) returns
    (logits, BCE of eq. 12). After each forward, ``last_windows`` holds W of
    every layer (image, N, N) bool.
    """

    def __init__(self, vit: nn.Module, mask_mode: str = "multiply", target_kind: str = "box"):
        super().__init__()
        if mask_mode not in MASK_MODES:
            raise ValueError(f"winft mask_mode must be one of {MASK_MODES}, got '{mask_mode}'")
        self.layers = [block.attn for block in vit.blocks]
        if not all(isinstance(layer, WindowFree) for layer in self.layers):
            raise TypeError("WinFT needs a ViT built with attn_layer=WindowFreeAttention (models.vit.build_model)")
        for layer in self.layers:
            layer.n_prefix, layer.mask_mode = n_prefix_tokens(vit), mask_mode
        self.vit, self.mask_mode, self.target_kind = vit, mask_mode, target_kind
        self.grid, self.n_prefix = patch_grid(vit), n_prefix_tokens(vit)

    @property
    def last_windows(self) -> list[torch.Tensor]:
        return [layer.windows for layer in self.layers]

    def forward(self, images: torch.Tensor, target: torch.Tensor | None = None):
        logits = self.vit(images)
        if target is None:
            return logits
        truth = window_target(target, self.grid, self.target_kind)
        return logits, window_bce([layer.logits for layer in self.layers], truth)
