"""Shared set-up of the benchmarks: a random-weight ViT and a dataset of random images."""

import shutil
import tempfile
import time
from pathlib import Path

import patchinteract.compat  # noqa: F401  (before anything imports timm or torchvision)

import torch

from patchinteract.models.vit import create_vit


class RandomImages(torch.utils.data.Dataset):
    """Normalised random images with labels and ids, shaped like the workflow's datasets."""

    def __init__(self, count: int, size: int, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.images = torch.randn(count, 3, size, size, generator=generator)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return self.images[index], 0, index


def vit_b16(img_size: int = 224, **model_args):
    torch.manual_seed(0)
    return create_vit("vit_base_patch16_224", img_size, 16, 1000, model_args).eval()


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def scratch_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="patchinteract-bench-"))


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
