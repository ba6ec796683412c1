"""Retraining branches: which masks a branch uses, loading them beside a split, and its E_O."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import zarr

from patchinteract.masks.mirror import MIRRORS
from patchinteract.masks.windows import window_interactions


class MaskMismatchError(ValueError):
    """Masks computed for other images than the dataset they are used with."""


class MaskedSamples(torch.utils.data.Dataset):
    """Samples of ``dataset`` (image, label, image_id) followed by that image's compact masks.

    ``masks`` maps a mask store's array name (window, keep, field_box,
    field_members) to its values in dataset order; it may be empty. With
    ``hflip``, half the samples (drawn from torch's RNG, which
    :class:`patchinteract.training.loop.SeededSamples` seeds per sample) are mirrored
    left-right, the image and every mask alike (:data:`patchinteract.masks.mirror.MIRRORS`).
    The image is flipped after the dataset's transform, whose random crop the
    masks do not follow: they are applied as computed on the evaluation view.
    """

    def __init__(self, dataset, masks: dict[str, torch.Tensor], grid: tuple[int, int], hflip: bool = False):
        unknown = set(masks) - set(MIRRORS)
        if unknown:
            raise ValueError(f"no horizontal-flip rule for mask arrays {sorted(unknown)}")
        self.dataset, self.masks, self.grid, self.hflip = dataset, masks, grid, hflip

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, label, image_id = self.dataset[index]
        masks = {name: values[index] for name, values in self.masks.items()}
        if self.hflip and torch.rand(1) < 0.5:  # the draw torchvision's RandomHorizontalFlip makes
            image = image.flip(-1)
            masks = {name: torch.from_numpy(MIRRORS[name](m.numpy(), self.grid)) for name, m in masks.items()}
        return image, label, image_id, *masks.values()


def load_mask_array(path: Path | str | None, name: str, image_ids: np.ndarray) -> torch.Tensor | None:
    """Array ``name`` of a mask store as a tensor in dataset order (None for no store); checks the image ids."""
    if path is None:
        return None
    group = zarr.open_group(path, mode="r")
    stored_ids = group["image_id"][:]
    if not np.array_equal(stored_ids, image_ids):
        raise MaskMismatchError(
            f"{path} holds masks for {len(stored_ids)} images that differ from the dataset's "
            f"{len(image_ids)} (rebuild the masks from the current manifest)"
        )
    return torch.from_numpy(group[name][:])


def load_masks(window_store: Path | str | None, keep_store: Path | str | None, image_ids: np.ndarray):
    """(windows, keep) as tensors in dataset order (either may be None)."""
    return load_mask_array(window_store, "window", image_ids), load_mask_array(keep_store, "keep", image_ids)


def branch_interactions(windows: torch.Tensor | None, keep: torch.Tensor | None, n_patches: int) -> float:
    """E_O of a branch on a split: N^2 without windows (plain attention), else the mean O of eq. 5."""
    if windows is None:
        return float(n_patches * n_patches)
    return float(window_interactions(windows.numpy(), None if keep is None else keep.numpy()).mean())
