"""A masked autoencoder (He et al. 2022) around the experiment's timm ViT, for the guided-masking
pre-training of Wu et al. (Sec. 5.2) and their restoration experiment (Sec. 2).

The encoder is the ViT itself, run by timm on the visible patches only (the masked patch tokens are
removed after the position embedding, as masking by θ's ``drop`` mode does); a small decoder of timm
blocks gets the encoded visible patches and a learned mask token at every masked position, each with a
learned position embedding, and predicts every masked patch's pixels. The loss is the mean squared
error on the masked patches of the per-patch normalised pixels (mean 0, variance 1 per patch: MAE's
``norm_pix_loss``).
"""

from __future__ import annotations

import torch
from timm.models.vision_transformer import Block
from torch import nn

from patchinteract.models.families import dropped_tokens
from patchinteract.models.vit import n_prefix_tokens, patch_grid

NORM_EPS = 1e-6  # MAE's
POOLING_MODULES = ("attn_pool", "fc_norm", "head_drop", "head", "head_dist")  # timm's, after forward_features


def patch_pixels(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, N, patch²·C) pixels of each patch, patches in row-major order (the ViT's token order)."""
    b, c, h, w = images.shape
    grid = images.reshape(b, c, h // patch, patch, w // patch, patch)
    return grid.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // patch) * (w // patch), patch * patch * c)


def pixels_to_images(pixels: torch.Tensor, patch: int, grid: tuple[int, int]) -> torch.Tensor:
    """The inverse of :func:`patch_pixels`: (B, C, H, W) from (B, N, patch²·C)."""
    rows, cols = grid
    b, c = pixels.shape[0], pixels.shape[-1] // (patch * patch)
    tiles = pixels.reshape(b, rows, cols, patch, patch, c).permute(0, 5, 1, 3, 2, 4)
    return tiles.reshape(b, c, rows * patch, cols * patch)


def normalised_patches(pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(targets, mean, std): each patch's pixels less their mean over the patch, over their standard
    deviation (unbiased, with MAE's 1e-6 under the root)."""
    mean = pixels.mean(dim=-1, keepdim=True)
    std = (pixels.var(dim=-1, keepdim=True) + NORM_EPS).sqrt()
    return (pixels - mean) / std, mean, std


def masked_patch_errors(predicted: torch.Tensor, targets: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """(B,): each image's mean squared error over its masked patches (of the per-patch mean over pixels)."""
    per_patch = ((predicted.float() - targets.float()) ** 2).mean(dim=-1)
    weights = masked.to(per_patch.dtype)
    return (per_patch * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


class MaeDecoder(nn.Module):
    """MAE's decoder: the encoder's prefix tokens and visible patches (``dim`` channels) and a learned mask
    token at every masked position, the patches with learned position embeddings, through ``depth`` timm
    blocks of ``width`` channels and ``heads`` heads, to every patch's ``channels`` normalised pixels."""

    def __init__(self, dim: int, n_patches: int, channels: int, width: int, depth: int, heads: int):
        super().__init__()
        self.embed = nn.Linear(dim, width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, n_patches, width))
        self.blocks = nn.Sequential(*(Block(width, heads, mlp_ratio=4.0, qkv_bias=True) for _ in range(depth)))
        self.norm = nn.LayerNorm(width)
        self.pred = nn.Linear(width, channels)
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def forward(self, tokens: torch.Tensor, masked: torch.Tensor, n_prefix: int) -> torch.Tensor:
        """(B, N, channels) from the encoder's tokens: ``n_prefix`` prefix tokens (CLS: they join the
        decoder's blocks, as in MAE, so the encoder's CLS output is trained), then the visible patches in
        row-major order."""
        tokens = self.embed(tokens)
        prefix, visible = tokens[:, :n_prefix], tokens[:, n_prefix:]
        full = self.mask_token.to(visible.dtype).expand(masked.shape[0], masked.shape[1], -1)
        full = full.masked_scatter(~masked[..., None], visible) + self.pos_embed
        return self.pred(self.norm(self.blocks(torch.cat([prefix, full], dim=1))[:, n_prefix:]))


class MaskedAutoencoder(nn.Module):
    """The ViT ``vit`` as an MAE encoder with a :class:`MaeDecoder` (``decoder``: width, depth, heads).
    ``model(images, masked)`` returns its loss (what :func:`patchinteract.training.loop.reconstruction`
    trains)."""

    def __init__(self, vit: nn.Module, decoder: dict):
        super().__init__()
        self.encoder = vit
        self.patch = int(vit.patch_embed.patch_size[0])
        self.grid = patch_grid(vit)
        n_patches, channels = self.grid[0] * self.grid[1], 3 * self.patch * self.patch
        self.decoder = MaeDecoder(vit.embed_dim, n_patches, channels, **decoder)
        # The pooling and classifier take no part in the loss: frozen, so DDP expects no gradient of them.
        for name in POOLING_MODULES:
            if isinstance(getattr(vit, name, None), nn.Module):
                getattr(vit, name).requires_grad_(False)

    def encode(self, images: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        """The encoder's output tokens of the visible patches (prefix tokens first, then the visible patches
        in row-major order); every image masks as many patches."""
        with dropped_tokens(self.encoder, ~masked):
            return self.encoder.forward_features(images)

    def decode(self, tokens: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        """(B, N, patch²·3): the predicted normalised pixels of every patch."""
        return self.decoder(tokens, masked, n_prefix_tokens(self.encoder))

    def predict(self, images: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(images, masked), masked)

    def errors(self, images: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        """(B,): the reconstruction error of each image on its masked patches (normalised-pixel targets)."""
        targets, _mean, _std = normalised_patches(patch_pixels(images, self.patch))
        return masked_patch_errors(self.predict(images, masked), targets, masked)

    def forward(self, images: torch.Tensor, masked: torch.Tensor):
        # Every image masks as many patches: the mean of the images' errors is the mean over all masked patches.
        return self.errors(images, masked).mean()

    @torch.no_grad()
    def restored(self, images: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        """``images`` with their masked patches replaced by the prediction, brought back to each patch's own
        mean and spread (known to the figure, as in MAE's visualisations)."""
        pixels = patch_pixels(images, self.patch)
        _targets, mean, std = normalised_patches(pixels)
        predicted = self.predict(images, masked).float() * std + mean
        return pixels_to_images(torch.where(masked[..., None], predicted, pixels), self.patch, self.grid)

    def pooled_features(self, images: torch.Tensor) -> torch.Tensor:
        """The encoder's pooled features of the unmasked images (the classifier's input: CLS or mean)."""
        return self.encoder.forward_head(self.encoder.forward_features(images), pre_logits=True)
