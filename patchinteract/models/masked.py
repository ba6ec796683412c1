"""A timm ViT whose attention is restricted by per-image windows (AWD) and kept tokens (DIP).

Masks travel in the batch in compact form, windows (image, N, 4) int16 and
keep (image, N) bool, and are expanded here, on the device that trains. The
blocks are timm's own: the mask goes to timm's Attention, which hands it to
``F.scaled_dot_product_attention`` (boolean: True = may attend, False becomes -inf
before the softmax; float: added to the logits), so the fused kernels stay in use.
The boolean mask is built once per batch, for all layers and heads. With kept
tokens the blocks run on the prefix and kept tokens only (exactly the dense model:
:meth:`MaskedViT.reduced_forward`), so a DIP branch costs about (1 - β) of a ViT.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from patchinteract.coordinates import patch_xy
from patchinteract.models.families import dropped_tokens, family_of, kept_token_index, stem
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
    xs, ys = patch_xy(torch.arange(rows * cols, device=device), cols)
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
    ``forward(images, windows, keep)`` is AWD + DIP. What DIP means is
    :meth:`dense_forward`: ``dip_mode`` multiply multiplies the token sequence by
    the keep mask at the input of every block and before the final norm, so
    dropped tokens stay zero; drop_keys removes them as keys from every attention
    row but their own. :meth:`forward` computes the same model on fewer tokens
    (:meth:`reduced_forward`; docs/method.md, "DIP on fewer tokens").
    """

    def __init__(self, vit: nn.Module, cls_in_window: bool = True, dip_mode: str = "multiply"):
        super().__init__()
        if dip_mode not in DIP_MODES:
            raise ValueError(f"dip_mode must be one of {DIP_MODES}, got '{dip_mode}'")
        self.vit = vit
        self.cls_in_window, self.dip_mode = cls_in_window, dip_mode
        self.grid, self.n_prefix = patch_grid(vit), n_prefix_tokens(vit)

    def forward(self, images: torch.Tensor, windows: torch.Tensor | None = None, keep: torch.Tensor | None = None):
        if keep is None:
            return self.dense_forward(images, windows)
        if not self.pools_reduced_tokens or not self.reduced_is_exact:
            return self.dense_forward(images, windows, keep)  # exact, without the saving
        return self.reduced_forward(images, windows, keep)

    @property
    def pools_reduced_tokens(self) -> bool:
        """Whether :meth:`reduced_forward` can pool: by class token, avg, max or avgmax (an attention
        pool, e.g. ``global_pool: map``, attends over every token; the dense forward serves it)."""
        return self.vit.attn_pool is None and bool(self.vit.global_pool)

    @property
    def reduced_is_exact(self) -> bool:
        """Whether :meth:`reduced_forward` equals the dense model. With rotary embeddings the dropped tokens
        of ``multiply`` are zero at each block input but their keys are rotated by their own positions, so no
        single shared token stands for them: the dense forward serves it (drop_keys stays exact)."""
        return self.dip_mode == "drop_keys" or not family_of(self.vit).rotary(self.vit)

    def attention_mask(self, images: torch.Tensor, windows: torch.Tensor | None, keep: torch.Tensor | None):
        """The dense boolean mask (image, 1, T, T) of :func:`window_attention_mask`; None for plain attention."""
        if windows is None and (keep is None or self.dip_mode != "drop_keys"):
            return None
        if windows is None:
            windows = keep_all_windows(images.shape[0], self.grid, images.device)
        return window_attention_mask(
            windows.to(images.device),
            self.grid,
            self.n_prefix,
            keep=None if keep is None else keep.to(images.device),
            cls_in_window=self.cls_in_window,
            drop_keys=self.dip_mode == "drop_keys",
        )

    def token_scale(self, keep: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """(image, T, 1): 1 for prefix tokens and kept patches, 0 for dropped patches."""
        prefix = torch.ones(keep.shape[0], self.n_prefix, dtype=dtype, device=keep.device)
        return torch.cat([prefix, keep.to(dtype)], dim=1)[..., None]

    def dense_forward(self, images, windows: torch.Tensor | None = None, keep: torch.Tensor | None = None):
        """The model as defined: every token computed, dropped ones zeroed or masked (the reference for DIP)."""
        mask = self.attention_mask(images, windows, keep)
        with contextlib.ExitStack() as scaling:
            if keep is not None and self.dip_mode == "multiply":
                # timm has no extension point for scaling tokens between blocks: forward pre-hooks
                # multiply the input of every block and of the final norm, for this call only.
                scale = self.token_scale(keep.to(images.device), images.dtype)
                for module in (*self.vit.blocks, self.vit.norm):
                    scaling.enter_context(scaled_input(module, scale))
            return self.vit.forward_head(self.vit.forward_features(images, attn_mask=mask))

    def reduced_forward(self, images: torch.Tensor, windows: torch.Tensor | None, keep: torch.Tensor):
        """:meth:`dense_forward` with keep, computed on the prefix and kept tokens only.

        drop_keys: no dropped token is a key of another token, so nothing flows from
        one into a kept or prefix token: they are left out. multiply: every dropped
        token is the zero vector at each block input, so all of them have one key and
        one value; a single zero token stands for them, its attention logit raised by
        log(number of dropped keys the query may attend to), which is the softmax over
        the identical copies (:func:`reduced_attention_bias`). Pooling: the class token
        as in the dense model; an average or maximum over patch tokens counts the shared
        token once per dropped patch (multiply, exact) or uses the kept tokens only
        (drop_keys, where the dense model would pool computed but unused tokens).
        """
        vit, keep = self.vit, keep.to(images.device)
        if not self.pools_reduced_tokens:
            raise ValueError(
                "DIP on fewer tokens pools by class token, avg, max or avgmax; this ViT has "
                + ("an attention pool" if vit.attn_pool is not None else "no pooling")
            )
        if family_of(vit).random_patch_dropout(vit):  # timm's random patch dropout would reorder the tokens
            raise ValueError("DIP masks cannot be combined with timm's patch dropout (model_args.patch_drop_rate)")
        if not self.reduced_is_exact:
            raise ValueError("DIP multiply with rotary position embeddings has no exact form on fewer tokens")
        multiply = self.dip_mode == "multiply"
        index = kept_token_index(keep, self.n_prefix)  # (image, T_kept): prefix, then kept patches
        with dropped_tokens(vit, keep):  # the one token-dropping path, shared with θ masking and the MAE
            tokens, block_arguments = stem(vit, images)
        mask = self.attention_mask(images, windows, keep)
        bias = reduced_attention_bias(mask, keep, index, self.n_prefix, shared_token=multiply, dtype=tokens.dtype)
        if multiply:
            tokens = torch.cat([tokens, tokens.new_zeros(tokens.shape[0], 1, tokens.shape[-1])], dim=1)
            # The shared token is zero at every block input and before the final norm, as the tokens it stands for.
            scale = torch.ones(tokens.shape[1], 1, dtype=tokens.dtype, device=tokens.device)
            scale[-1] = 0
        for block, arguments in zip(vit.blocks, block_arguments, strict=True):
            tokens = block(tokens * scale if multiply else tokens, attn_mask=bias, **arguments)
        tokens = vit.norm(tokens * scale if multiply else tokens)
        if multiply and vit.global_pool != "token":
            dropped = keep.shape[1] - (index.shape[1] - self.n_prefix)  # the same for every image
            tokens = torch.cat([tokens[:, :-1], tokens[:, -1:].expand(-1, dropped, -1)], dim=1)
        return vit.forward_head(tokens)


def reduced_attention_bias(
    mask: torch.Tensor | None,
    keep: torch.Tensor,
    index: torch.Tensor,
    n_prefix: int,
    shared_token: bool,
    dtype: torch.dtype,
) -> torch.Tensor | None:
    """The attention mask of the kept tokens (``index`` rows and columns of the dense ``mask``).

    Without ``shared_token``: that boolean (image, 1, T_kept, T_kept), or None when
    ``mask`` is None. With it (multiply): an additive float mask over the kept tokens
    and one last shared token, (image, 1, T_kept + 1, T_kept + 1): 0 where allowed,
    -inf where not, and in the shared column log(the number of dropped patches the
    query may attend to), -inf where none. The shared token's own row is all 0: its
    output is zeroed before any use.
    """
    images, tokens = index.shape
    rows = None if mask is None else mask[:, 0].gather(1, index[..., None].expand(-1, -1, mask.shape[-1]))
    allowed = None if rows is None else rows.gather(2, index[:, None, :].expand(-1, tokens, -1))
    if not shared_token:
        return None if allowed is None else allowed[:, None]
    dropped = ~keep
    if rows is None:
        count = dropped.sum(dim=1, keepdim=True).expand(-1, tokens)
    else:
        count = (rows[:, :, n_prefix:] & dropped[:, None, :]).sum(dim=-1)
    bias = torch.zeros(images, tokens + 1, tokens + 1, dtype=dtype, device=index.device)
    if allowed is not None:
        bias[:, :tokens, :tokens].masked_fill_(~allowed, float("-inf"))
    bias[:, :tokens, tokens] = count.to(dtype).log()  # log 0 = -inf
    return bias[:, None]


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
