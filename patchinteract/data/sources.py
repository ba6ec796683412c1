"""Where images come from: scikit-learn's digits written as PNGs, or an archive downloaded and extracted."""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from patchinteract.data.manifest import DatasetError


def write_digits_imagefolder(
    root: Path, image_size: int, val_fraction: float, seed: int, per_class: int | None = None
) -> pd.DataFrame:
    """scikit-learn's bundled 8x8 digits as RGB PNGs of ``image_size`` pixels.

    Written as ``root/{split}/{digit}/{index:04d}.png`` with a stratified split
    fixed by ``seed``; ``per_class`` keeps only the first images of each digit
    (for tiny test runs). Returns the manifest rows (without ``image_id``).
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    indices = np.arange(len(digits.target))
    if per_class is not None:
        indices = np.concatenate([np.flatnonzero(digits.target == d)[:per_class] for d in range(10)])
    train_idx, val_idx = train_test_split(
        indices, test_size=val_fraction, stratify=digits.target[indices], random_state=seed
    )
    split_of = {int(i): "train" for i in train_idx} | {int(i): "val" for i in val_idx}
    rows = []
    for index in tqdm(indices, desc="digits", mininterval=5):
        label = int(digits.target[index])
        # 0..16 gray levels, white digit on black; bilinear upscaling gives each patch a gradient,
        # not one flat value, which a small ViT learns from far faster
        pixels = (digits.images[index] * (255.0 / 16.0)).round().astype(np.uint8)
        image = Image.fromarray(pixels).resize((image_size, image_size), Image.BILINEAR)
        relative = Path(split_of[int(index)]) / str(label) / f"{index:04d}.png"
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        image.convert("RGB").save(root / relative)
        rows.append((str(relative), label, str(label), split_of[int(index)]))
    return pd.DataFrame(rows, columns=["path", "label", "class_name", "split"])


def sha256_of(path: Path, block: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def download(url: str, destination: Path, sha256: str, timeout: float = 60.0) -> None:
    """Download ``url`` to ``destination`` via a temporary file; verify size and sha256 first.

    Nothing is left at ``destination`` unless the whole file arrived and matched.
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=destination.parent, prefix=destination.name + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle, urllib.request.urlopen(url, timeout=timeout) as response:
            expected = response.headers.get("Content-Length")
            expected = int(expected) if expected is not None else None
            received = 0
            with tqdm(total=expected, unit="B", unit_scale=True, desc=destination.name, mininterval=5) as bar:
                try:
                    while chunk := response.read(1 << 20):
                        handle.write(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
                except Exception as exc:  # http.client.IncompleteRead, ConnectionResetError, timeouts
                    raise DatasetError(
                        f"download of {url} broke off after {received} of {expected or '?'} bytes: {exc!r}"
                    ) from exc
        if expected is not None and received != expected:
            raise DatasetError(f"download of {url} is incomplete: {received} of {expected} bytes arrived")
        actual = sha256_of(Path(temporary))
        if actual != sha256.lower():
            raise DatasetError(f"checksum mismatch for {url}: expected sha256 {sha256.lower()}, got {actual}")
        os.replace(temporary, destination)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def extract_archive(archive: Path, destination: Path) -> None:
    """Extract a tar(.gz/.bz2/.xz) or zip archive into ``destination`` atomically.

    Extraction goes to a sibling temporary folder that is renamed into place
    only when complete, so an interrupted extraction leaves nothing behind.
    """
    if destination.exists():
        raise DatasetError(f"refusing to extract {archive} over existing {destination}")
    temporary = Path(tempfile.mkdtemp(dir=destination.parent, prefix=destination.name + ".", suffix=".part"))
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zipped:
                zipped.extractall(temporary)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tarred:
                tarred.extractall(temporary, filter="data")
        else:
            raise DatasetError(f"{archive} is neither a tar nor a zip archive")
        os.replace(temporary, destination)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
