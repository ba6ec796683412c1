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


def goal_line(what: str, ratios: list[float], goal: float, at_most: bool = True) -> str:
    """``what``'s ratios (one per paired repeat: both sides timed back to back) beside its goal."""
    best, worst = (min(ratios), max(ratios)) if at_most else (max(ratios), min(ratios))
    met = worst <= goal if at_most else worst >= goal
    sign = "≤" if at_most else "≥"
    verdict = "met" if met else ("met at best" if (best <= goal if at_most else best >= goal) else "missed")
    return f"{what}: best {best:.2f}x, worst {worst:.2f}x of {len(ratios)}  (goal {sign} {goal}x: {verdict})"


def vit_b16_store(path: Path, images: int) -> Path:
    """An attention store of ``images`` random images through the random-weight ViT-B/16 (the workflow's
    settings: auto chunks, compression level 1)."""
    from patchinteract.attention.extraction import write_attention_store

    return write_attention_store(
        vit_b16(),
        RandomImages(images, 224),
        path,
        device=torch.device("cpu"),
        batch_size=16,
        workers=0,
        chunk_setting="auto",
        compression_level=1,
        attributes={},
    )
