"""A timm ViT whose attention is restricted by per-image windows (AWD) and kept tokens (DIP).

Masks travel in the batch in compact form, windows (image, N, 4) int16 and
keep (image, N) bool, and are expanded here, on the device that trains. The
blocks are timm's own: the boolean mask goes to timm's Attention, which hands
it to ``F.scaled_dot_product_attention`` (True = may attend; False becomes -inf
before the softmax), so the fused GPU kernels stay in use.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from patchinteract.models.vit import n_prefix_tokens, patch_grid

DIP_MODES = ("multiply", "drop_keys")


def window_attention_mask(
    windows: torch.Tensor,
    grid: tuple[int, int],
    n_prefix: int,
    keep: torch.Tensor | None = None,
    cls_in_window: bool = True,
    drop_keys: bool = False,
) -> torch.Tensor:
    """Boolean attention mask (image, 1, T, T) from compact windows [x_l, y_t, x_r, y_b].

    A patch query may attend to the patch keys inside its window (eq. 4-5),
    always to itself, and to the prefix tokens unless ``cls_in_window`` is
    False; prefix queries attend to everything (docs/method.md). With
    ``drop_keys``, dropped patches (keep False) are removed as keys everywhere
    except from their own row.
    """
    rows, cols = grid
    device = windows.device
    patches = torch.arange(rows * cols, device=device)
    xs, ys = patches % cols, patches // cols
    windows = windows.to(torch.int64)
    x_left, y_top, x_right, y_bottom = (windows[..., i, None] for i in range(4))  # (image, N, 1)
    inside = (xs >= x_left) & (xs <= x_right) & (ys >= y_top) & (ys <= y_bottom)  # (image, query, key)
    images, tokens = windows.shape[0], n_prefix + rows * cols
    mask = torch.ones(images, tokens, tokens, dtype=torch.bool, device=device)
    mask[:, n_prefix:, n_prefix:] = inside
    if not cls_in_window:
        mask[:, n_prefix:, :n_prefix] = False
    if drop_keys and keep is not None:
        mask[:, :, n_prefix:] &= keep[:, None, :].to(device)
    mask |= torch.eye(tokens, dtype=torch.bool, device=device)  # every token may attend to itself
    return mask[:, None]


def keep_all_windows(images: int, grid: tuple[int, int], device=None) -> torch.Tensor:
    """Windows that cover the whole grid for every patch (α = 1): (image, N, 4) int16."""
    rows, cols = grid
    box = torch.tensor([0, 0, cols - 1, rows - 1], dtype=torch.int16, device=device)
    return box.expand(images, rows * cols, 4).clone()


class MaskedViT(nn.Module):
    """``vit`` (a timm VisionTransformer) run under optional windows and kept-token masks.

    ``forward(images)`` is the plain model; ``forward(images, windows)`` is AWD;
    ``forward(images, windows, keep)`` is AWD + DIP. ``dip_mode`` multiply
    multiplies the token sequence by the keep mask at the input of every block
    (and before the final norm), so dropped tokens stay zero; drop_keys also
    removes them as keys from every attention.
    """

    def __init__(self, vit: nn.Module, cls_in_window: bool = True, dip_mode: str = "multiply"):
        super().__init__()
        if dip_mode not in DIP_MODES:
            raise ValueError(f"dip_mode must be one of {DIP_MODES}, got '{dip_mode}'")
        self.vit = vit
        self.cls_in_window, self.dip_mode = cls_in_window, dip_mode
        self.grid, self.n_prefix = patch_grid(vit), n_prefix_tokens(vit)

    def token_scale(self, keep: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """(image, T, 1): 1 for prefix tokens and kept patches, 0 for dropped patches."""
        prefix = torch.ones(keep.shape[0], self.n_prefix, dtype=dtype, device=keep.device)
        return torch.cat([prefix, keep.to(dtype)], dim=1)[..., None]

    def forward(self, images: torch.Tensor, windows: torch.Tensor | None = None, keep: torch.Tensor | None = None):
        mask = None
        if windows is not None or (keep is not None and self.dip_mode == "drop_keys"):
            if windows is None:
                windows = keep_all_windows(images.shape[0], self.grid, images.device)
            mask = window_attention_mask(
                windows.to(images.device), self.grid, self.n_prefix,
                keep=None if keep is None else keep.to(images.device),
                cls_in_window=self.cls_in_window, drop_keys=self.dip_mode == "drop_keys",
            )  # fmt: skip
        with contextlib.ExitStack() as scaling:
            if keep is not None and self.dip_mode == "multiply":
                # timm has no extension point for scaling tokens between blocks: forward pre-hooks
                # multiply the input of every block and of the final norm, for this call only.
                scale = self.token_scale(keep.to(images.device), images.dtype)
                for module in (*self.vit.blocks, self.vit.norm):
                    scaling.enter_context(scaled_input(module, scale))
            return self.vit.forward_head(self.vit.forward_features(images, attn_mask=mask))


@contextlib.contextmanager
def scaled_input(module: nn.Module, scale: torch.Tensor):
    """Multiply the first input of ``module`` by ``scale`` while the context is open."""
    handle = module.register_forward_pre_hook(
        lambda _module, args: (args[0] * scale.to(args[0].dtype), *args[1:]),
        prepend=True,  # before other hooks
    )
    try:
        yield
    finally:
        handle.remove()


@contextlib.contextmanager
def dropped_tokens(vit: nn.Module, keep: torch.Tensor):
    """Remove the patch tokens that ``keep`` (image, N) marks False, after the position embedding,
    while the context is open. Every image must keep as many patches (the tokens form one batch).

    timm has no token-selection hook outside training (its PatchDropout is random), so a forward
    hook on ``patch_drop`` gathers the kept tokens; prefix tokens always stay.
    """
    kept = keep.sum(dim=1)
    if kept.numel() and not bool((kept == kept[0]).all()):
        raise ValueError(f"every image must keep as many patches to drop tokens, got {kept.unique().tolist()}")
    prefix = n_prefix_tokens(vit)
    index = keep.nonzero()[:, 1].view(keep.shape[0], -1)  # row-major order of the kept patches

    def gather(_module, _args, tokens):
        index_ = index.to(tokens.device)[..., None].expand(-1, -1, tokens.shape[-1])
        return torch.cat([tokens[:, :prefix], tokens[:, prefix:].gather(1, index_)], dim=1)

    handle = vit.patch_drop.register_forward_hook(gather)
    try:
        yield
    finally:
        handle.remove()
