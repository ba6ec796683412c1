"""Image transforms from the model's timm data config: evaluation and training views."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import timm
import torch
from timm.data import resolve_model_data_config
from torchvision import transforms

from patchinteract.data.manifest import ManifestDataset, split_dataset


def data_config(model: timm.models.VisionTransformer) -> dict:
    """timm's mean/std/crop_pct for the model, with the input size the model was built for.

    Models built from explicit sizes have no pretrained config: they get no
    centre crop (crop_pct 1), since nothing was trained with one.
    """
    config = dict(resolve_model_data_config(model))
    config["input_size"] = (3, *model.patch_embed.img_size)
    if "crop_pct" not in (getattr(model, "pretrained_cfg", None) or {}):
        config["crop_pct"] = 1.0
    return config


def eval_view(model: torch.nn.Module):
    """The evaluation view as a PIL image: resize and centre crop as the model's timm data config says."""
    config = data_config(model)
    size = config["input_size"][-1]
    return transforms.Compose(
        [
            transforms.Resize(int(size / config["crop_pct"]), interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(size),
        ]
    )


def eval_transform(model: torch.nn.Module):
    """The evaluation view, normalised as the model's timm data config says."""
    config = data_config(model)
    return transforms.Compose(
        [eval_view(model), transforms.ToTensor(), transforms.Normalize(config["mean"], config["std"])]
    )


def uint8_eval_transform(model: torch.nn.Module):
    """The evaluation view as uint8 (C, H, W), normalised per batch by :func:`batch_normalization` (MAE
    pre-training: the view the keypoints were counted on)."""
    return transforms.Compose([eval_view(model), transforms.PILToTensor()])


def train_transform(model: torch.nn.Module, crop_scale: tuple[float, float]):
    """Random-resized-crop augmentation (the paper's "random crop") as uint8 (C, H, W) tensors.

    The training loop normalises whole batches on its device with :func:`batch_normalization`:
    one operation per batch instead of two per image (a third of the demo's loading time), and a
    quarter of the bytes to copy to a GPU. The horizontal flip (``hflip``) is applied per sample
    with its masks, by :class:`patchinteract.training.retraining.BranchSamples`.
    """
    config = data_config(model)
    return transforms.Compose(
        [
            transforms.RandomResizedCrop(
                config["input_size"][-1], scale=tuple(crop_scale), interpolation=transforms.InterpolationMode.BICUBIC
            ),
            transforms.PILToTensor(),
        ]
    )


def batch_normalization(model: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 batches (B, C, H, W) to float32, normalised as the model's timm data config says.

    The same float32 operations as torchvision's ``ToTensor`` and ``Normalize`` on each image,
    so the result is bit-identical to them.
    """
    config = data_config(model)
    mean = torch.as_tensor(config["mean"], dtype=torch.float32).view(-1, 1, 1)
    std = torch.as_tensor(config["std"], dtype=torch.float32).view(-1, 1, 1)

    def normalize(images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8:
            raise TypeError(f"batch_normalization expects uint8 images (train_transform), got {images.dtype}")
        return images.to(torch.float32).div(255).sub_(mean.to(images.device)).div_(std.to(images.device))

    return normalize


def eval_dataset(model, manifest: str | Path, split: str) -> ManifestDataset:
    return split_dataset(manifest, split, eval_transform(model))
