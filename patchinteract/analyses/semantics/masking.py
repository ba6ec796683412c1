"""Masking by θ (Wu et al., Sec. 5.1, Fig. 8): mask the patches of highest (top) or lowest (bottom) θ_i,
or random ones (the control), and measure the baseline's top-1 on val. Which patches are masked is
decided in :mod:`patchinteract.analyses.semantics.ranking`; this module runs the model.

A patch's score is θ_i averaged over heads (the semantics store's ``theta_patch``) and then over the
chosen layers. Ratio r masks floor(r·N + 1/2) patches. Masking either zeroes the patch's pixels after
normalisation (``zero``: the normalisation mean of the model's transform, e.g. timm's ImageNet mean, which
is not the data set's own mean colour; with ``fill: dataset_mean`` the data set's mean colour instead) or
removes its token after the position embedding (``drop``).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from patchinteract.analyses.semantics.ranking import check_ratios, keep_mask, masked_count
from patchinteract.models.families import dropped_tokens
from patchinteract.models.vit import patch_grid
from patchinteract.ranks import rank_block, rank_range
from patchinteract.runtime import autocast
from patchinteract.training.evaluation import PREDICTION_COLUMNS, Predictions

log = logging.getLogger(__name__)

MASK_MODES = ("zero", "drop")


def zeroed_patches(
    images: torch.Tensor, keep: torch.Tensor, grid: tuple[int, int], fill: torch.Tensor | None = None
) -> torch.Tensor:
    """``images`` (B, C, H, W) with the pixels of the patches that ``keep`` (B, N) marks False set to 0
    (normalised: the normalisation mean), or to ``fill`` (C,) where given."""
    rows, cols = grid
    pixels = keep.view(-1, 1, rows, cols).to(images.dtype)
    pixels = pixels.repeat_interleave(images.shape[-2] // rows, dim=2).repeat_interleave(images.shape[-1] // cols, 3)
    if fill is None:
        return images * pixels
    return images * pixels + fill.to(images).view(1, -1, 1, 1) * (1 - pixels)


def normalised_colour(colour, mean, std) -> torch.Tensor:
    """An RGB colour in [0, 1] as the model's normalised input sees it: (colour - mean) / std per channel."""
    return (torch.as_tensor(colour, dtype=torch.float32) - torch.as_tensor(mean)) / torch.as_tensor(std)


def masked_logits(
    model, images: torch.Tensor, keep: torch.Tensor, mode: str, fill: torch.Tensor | None = None
) -> torch.Tensor:
    """The model's logits on ``images`` with the patches ``keep`` marks False masked by ``mode`` (``zero``
    with ``fill``: :func:`zeroed_patches`)."""
    if mode == "zero":
        return model(zeroed_patches(images, keep, patch_grid(model), fill))
    if mode == "drop":
        with dropped_tokens(model, keep):
            return model(images)
    raise ValueError(f"semantics.masking.mode must be one of {MASK_MODES}, got '{mode}'")


@torch.no_grad()
def masking_accuracy(
    model,
    dataset,
    rankings: dict[tuple[str, int | None], np.ndarray],
    ratios: list[float],
    mode: str,
    device: torch.device,
    fill: torch.Tensor | None = None,
    *,
    batch_size: int,
    workers: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Top-1 (and top-5) of ``model`` over ``dataset`` (the images of ``rankings``, in its order) for every
    ratio and ranking, each image loaded once. r = 0 is always included: the unmasked model, evaluated
    as the baseline's evaluation is (batches of ``batch_size``), so its top-1 is the baseline's.

    ``rankings`` maps (order, seed) to an (image, N) ranking (:func:`patch_ranking`; seed None for top
    and bottom). Returns (accuracy, predictions): one row per (r, order, seed) with r, order, seed,
    masked_patches, top1, top5, n_images; and the per-image predictions of every such variant
    (:class:`patchinteract.training.evaluation.Predictions`' columns after r, order, seed). ``fill``: the
    normalised colour of zeroed patches (:func:`zeroed_patches`). Under several ranks each masks its
    block of the images; the predictions are gathered in the order of one process.
    """
    ratios = check_ratios([0.0, *ratios])
    n_images, n = next(iter(rankings.values())).shape
    if len(dataset) != n_images:
        raise ValueError(f"the data set has {len(dataset)} images, the θ scores are of {n_images}")
    model.to(device).eval()
    variants = [(r, key) for r in ratios if masked_count(r, n) > 0 for key in rankings]
    unmasked, predictions = Predictions(), {variant: Predictions() for variant in variants}
    loader = torch.utils.data.DataLoader(rank_block(dataset), batch_size=batch_size, num_workers=workers)
    start = rank_range(n_images).start
    for images, labels, image_ids in tqdm(loader, desc="masking", unit="batch", mininterval=5):
        images, labels = images.to(device), labels.to(device)
        stop = start + len(images)
        with autocast(device):
            unmasked.update(model(images), labels, image_ids)
            for ratio, key in variants:
                keep = torch.from_numpy(keep_mask(rankings[key][start:stop], masked_count(ratio, n))).to(device)
                predictions[ratio, key].update(masked_logits(model, images, keep, mode, fill), labels, image_ids)
        start = stop
    for recorded in (unmasked, *predictions.values()):
        recorded.gather()
    rows, per_image = [], []
    for ratio in ratios:
        for order, seed in rankings:
            count = masked_count(ratio, n)
            variant = {"r": ratio, "order": order, "seed": seed}
            result = predictions[ratio, (order, seed)] if count else unmasked
            rows.append(variant | {"masked_patches": count} | result.metrics())
            per_image.append(result.table().assign(**variant))
    table, per_image = pd.DataFrame(rows), pd.concat(per_image, ignore_index=True)
    for frame in (table, per_image):
        frame["seed"] = frame["seed"].astype("Int64")
    per_image = per_image[["r", "order", "seed", *PREDICTION_COLUMNS]]
    return table[["r", "order", "seed", "masked_patches", "top1", "top5", "n_images"]], per_image
