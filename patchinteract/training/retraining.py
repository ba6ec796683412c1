"""Retraining one branch: its samples with the compact masks of its mask stores, its training and its
evaluation on val, as its kind (:mod:`patchinteract.training.branch_kinds`) says: which model wraps the
ViT, which mask arrays travel beside each split's samples (read from the mask stores the DAG made), the
loss weights, and how the val split is evaluated, E_O included (read from the stores' O, never
recomputed). ``workflow_scripts/retrain.py`` only reads inputs, calls :func:`retrain_branch` and writes
outputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import zarr

from patchinteract.data.manifest import split_dataset
from patchinteract.masks.mirror import MIRRORS
from patchinteract.models.transforms import eval_transform, train_transform
from patchinteract.models.vit import patch_grid
from patchinteract.ranks import Ranks, rank_block
from patchinteract.training.branch_kinds import ViTBranch
from patchinteract.training.loop import Classification
from patchinteract.training.runs import StartingWeights, TrainingRun


class MaskMismatchError(ValueError):
    """Masks computed for other images than the dataset they are used with, or for another α or β."""


class BranchSamples(torch.utils.data.Dataset):
    """A branch's samples: those of ``dataset`` (image, label, image_id) followed by the image's compact masks
    (none for the ViT branch and the baseline).

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


def load_mask_array(
    path: Path | str | None, name: str, image_ids: np.ndarray, values: dict[str, float] | None = None
) -> torch.Tensor | None:
    """Array ``name`` of a mask store as a tensor in dataset order (None for no store); checks the image ids,
    and that the store was computed for the job's own α and β (``values``; those the store records)."""
    if path is None:
        return None
    group = zarr.open_group(path, mode="r")
    for key, value in (values or {}).items():
        if key in group.attrs and group.attrs[key] != value:
            raise MaskMismatchError(
                f"{path} holds masks of {key} {group.attrs[key]!r}, but this job's {key} is "
                f"{value!r} (the stores were computed for other settings)"
            )
    stored_ids = group["image_id"][:]
    if not np.array_equal(stored_ids, image_ids):
        raise MaskMismatchError(
            f"{path} holds masks for {len(stored_ids)} images that differ from the dataset's "
            f"{len(image_ids)} (rebuild the masks from the current manifest)"
        )
    return torch.from_numpy(group[name][:])


def split_with_masks(
    branch: ViTBranch, manifest, split: str, transform, stores: dict[str, Path], grid, hflip=False, cache_images=False
):
    """The split's samples followed by the branch's compact masks (BranchSamples)."""
    dataset = split_dataset(manifest, split, transform, cache_images)
    masks = {
        name: load_mask_array(store, name, dataset.image_ids, branch.values)
        for name, store in branch.mask_arrays(stores).items()
    }
    return BranchSamples(dataset, masks, grid, hflip)


def retrain_branch(branch: ViTBranch, run: TrainingRun, init: StartingWeights, stores: dict[str, dict[str, Path]]):
    """Train one branch (stores: split -> kind of mask store -> folder) and evaluate it on val.

    Returns (vit, metrics, per-image val predictions, figure arrays or None); the weights are saved by the run.
    """
    vit = run.build_vit(init, branch.attn_layer)
    model = branch.model(vit)
    train = split_with_masks(
        branch,
        run.manifest,
        "train",
        train_transform(vit, run.recipe.crop_scale),
        stores["train"],
        patch_grid(vit),
        run.recipe.hflip,
        run.execution.cache_images,
    )
    summary = run.train(vit, model, train, Classification(branch.loss_weights, run.recipe.label_smoothing))
    val = split_with_masks(branch, run.manifest, "val", eval_transform(vit), stores["val"], patch_grid(vit))
    loader = torch.utils.data.DataLoader(
        rank_block(val), batch_size=run.execution.batch_size, num_workers=run.execution.loader_workers
    )
    rows, cols = patch_grid(vit)
    device = Ranks.current().device(run.execution.device)
    image_ids = val.dataset.image_ids
    metrics, predictions, figure = branch.evaluate(model, loader, device, stores["val"], image_ids, rows * cols)
    metrics |= {key: summary[key] for key in ("train_seconds", "steps", "resumed_from_step")}
    return vit, metrics, predictions, figure
