"""The manifest: every image of a dataset, checked and ordered, and the dataset of one split."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image
from tqdm.auto import tqdm

log = logging.getLogger(__name__)


def readable_suffixes() -> frozenset[str]:
    """Every file extension Pillow can open (GIF, TIFF, WebP, BMP, ... ; compared in lower case)."""
    Image.init()
    return frozenset(suffix for suffix, kind in Image.registered_extensions().items() if kind in Image.OPEN)


IMAGE_SUFFIXES = readable_suffixes()

# What transparent pixels (RGBA, LA, palette images with a transparent colour) are composited onto.
TRANSPARENT_BACKGROUND = (255, 255, 255)
# Pixel values of high-bit-depth modes that become 0 and 255: 16-bit integers span their whole range;
# 32-bit integer images ("I", how Pillow may open a 16-bit PNG) are read as 16-bit; float images as [0, 1].
FULL_SCALE = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535, "I": 65535, "F": 1.0}


MANIFEST_COLUMNS = ["image_id", "path", "label", "class_name", "split", "error"]


ROOT_METADATA_KEY = b"patchinteract.root"


class DatasetError(RuntimeError):
    """A dataset that is missing, malformed, or could not be fetched."""


# Why a file under a split folder is not in the manifest (the scan's reasons; unreadable images are in it).
NOT_AN_IMAGE = "not an image file (extension)"
OUTSIDE_CLASSES = "outside a class folder"


def scan_imagefolder(
    root: Path,
    split_dirs: dict[str, str],
    expected_counts: dict | None = None,
    classes: list[str] | None = None,
    left_out: dict[str, list[str]] | None = None,
) -> pd.DataFrame:
    """Rows for an ImageFolder tree: ``root/<split_dir>/<class>/<image>`` (images in nested folders too).

    Class labels are the sorted class folder names of the first split; every
    split must use the same classes. ``classes`` keeps only those folders (a subset,
    labelled in sorted order; each must exist). ``expected_counts`` (split -> number of
    images) is checked when given. An image is a file with an extension Pillow opens, in any letter
    case; ``left_out``, when given, receives every other file (paths under ``root``) by reason.
    """
    left_out = {} if left_out is None else left_out
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} does not exist or is not a directory")
    class_names: list[str] | None = None
    rows = []
    for split, subdir in split_dirs.items():
        split_root = root / subdir
        if not split_root.is_dir():
            raise DatasetError(f"split '{split}': folder {split_root} does not exist")
        found = sorted(p.name for p in split_root.iterdir() if p.is_dir())
        missing = sorted(set(classes or ()) - set(found))
        if missing:
            raise DatasetError(
                f"split '{split}': {split_root} has no class folders {missing[:5]} of the classes listed"
            )
        classes_here = sorted(classes) if classes else found
        if not classes_here:
            raise DatasetError(f"split '{split}': {split_root} has no class folders (expected <class>/<image>)")
        if class_names is None:
            class_names = classes_here
        elif classes_here != class_names:
            extra, missing = set(classes_here) - set(class_names), set(class_names) - set(classes_here)
            raise DatasetError(
                f"split '{split}' in {split_root} has other classes than the first split: "
                f"extra {sorted(extra)[:5]}, missing {sorted(missing)[:5]}"
            )
        for file in sorted(p for p in split_root.iterdir() if not p.is_dir()):
            left_out.setdefault(OUTSIDE_CLASSES, []).append(str(file.relative_to(root)))
        for label, name in enumerate(class_names):
            for file in sorted(p for p in (split_root / name).rglob("*") if not p.is_dir()):
                if file.suffix.lower() in IMAGE_SUFFIXES:
                    rows.append((str(file.relative_to(root)), label, name, split))
                else:
                    left_out.setdefault(NOT_AN_IMAGE, []).append(str(file.relative_to(root)))
    table = pd.DataFrame(rows, columns=["path", "label", "class_name", "split"])
    for split, expected in (expected_counts or {}).items():
        found = int((table["split"] == split).sum())
        if found != expected:
            raise DatasetError(f"split '{split}' under {root}: expected {expected} images, found {found}")
    for split in split_dirs:
        if not (table["split"] == split).any():
            raise DatasetError(f"split '{split}' under {root} has no images (files Pillow opens, by extension)")
    return table


def left_out_summary(left_out: dict[str, list[str]], table: pd.DataFrame, shown: int = 3) -> str:
    """Every file not among the usable images, by reason: the scan's (``left_out``) and the unreadable
    images of a checked ``table`` (:func:`check_images`), each with its count and first paths."""
    reasons = dict(left_out)
    for error, rows in table[table["error"].notna()].groupby(table["error"].str.split(":").str[0]):
        reasons[f"unreadable ({error})"] = list(rows["path"])
    return "; ".join(
        f"{len(paths)} {reason}: {', '.join(paths[:shown])}{', ...' if len(paths) > shown else ''}"
        for reason, paths in reasons.items()
        if paths
    )


def read_cub_layout(root: Path) -> pd.DataFrame:
    """Rows for CUB-200-2011 with its official split (``train_test_split.txt``; test -> val)."""
    needed = ["images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt"]
    missing = [name for name in needed if not (root / name).is_file()]
    if missing:
        raise DatasetError(f"CUB root {root} lacks {missing}")

    def read_pairs(name: str) -> dict[int, str]:
        lines = (root / name).read_text().split("\n")
        return {int(k): v for k, v in (line.split(" ", 1) for line in lines if line.strip())}

    paths, labels, is_train = (read_pairs(n) for n in needed[:3])
    classes = read_pairs("classes.txt")
    rows = []
    for image_number, relative in sorted(paths.items()):
        class_number = int(labels[image_number])
        split = "train" if is_train[image_number].strip() == "1" else "val"
        rows.append((str(Path("images") / relative.strip()), class_number - 1, classes[class_number].strip(), split))
    return pd.DataFrame(rows, columns=["path", "label", "class_name", "split"])


def rgb_image(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit RGB: the one conversion of every reader (training, attention, keypoints, figures,
    explorer). High-bit-depth and float images are scaled to 8 bits (:data:`FULL_SCALE`; Pillow's own
    conversion clips them at 255), transparency is composited onto :data:`TRANSPARENT_BACKGROUND`, and the
    first frame of an animation is the image. EXIF orientation is ignored, as torchvision's and timm's
    loaders ignore it: pixels are read in the order they are stored, the order pretrained weights saw."""
    if image.mode in FULL_SCALE:
        pixels = np.asarray(image, dtype=np.float64) * (255.0 / FULL_SCALE[image.mode])
        image = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (*TRANSPARENT_BACKGROUND, 255))
        image = Image.alpha_composite(background, image)
    return image.convert("RGB")


def read_rgb(path: Path | str) -> Image.Image:
    """The image file at ``path`` as 8-bit RGB (:func:`rgb_image`)."""
    with Image.open(path) as image:
        return rgb_image(image)


def image_problem(path: Path) -> str | None:
    """None if ``path`` reads as an image (:func:`read_rgb`), else a short description of what is wrong."""
    try:
        read_rgb(path)
    except Exception as exc:  # PIL raises many types for bad files
        return f"{type(exc).__name__}: {exc}"
    return None


def check_images(table: pd.DataFrame, root: Path, on_corrupt: str, threads: int = 4) -> pd.DataFrame:
    """Decode every image once; fill the ``error`` column. ``on_corrupt``: error | skip."""
    paths = [root / p for p in table["path"]]
    with ThreadPoolExecutor(threads) as pool:
        problems = list(tqdm(pool.map(image_problem, paths), total=len(paths), desc="checking images", mininterval=5))
    table = table.assign(error=pd.Series(problems, index=table.index, dtype="string"))
    bad = table[table["error"].notna()]
    if len(bad) and on_corrupt == "error":
        first = bad.iloc[0]
        raise DatasetError(
            f"{len(bad)} unreadable image(s) under {root}; first: {root / first['path']} ({first['error']}). "
            "Fix or remove them, or set data.on_corrupt: skip"
        )
    for _, row in bad.iterrows():
        log.warning("skipping unreadable image %s: %s", root / row["path"], row["error"])
    return table


def finalize_manifest(table: pd.DataFrame) -> pd.DataFrame:
    """Fixed order (split, label, path) and ``image_id`` 0..n-1 in that order."""
    split_rank = table["split"].map({"train": 0, "val": 1}).fillna(2)
    ordered = table.assign(_rank=split_rank).sort_values(["_rank", "label", "path"], kind="stable")
    ordered = ordered.drop(columns="_rank").reset_index(drop=True)
    ordered.insert(0, "image_id", np.arange(len(ordered), dtype=np.int64))
    if "error" not in ordered:
        ordered["error"] = pd.Series([None] * len(ordered), dtype="string")
    return ordered[MANIFEST_COLUMNS].astype({"label": np.int64})


def write_manifest(table: pd.DataFrame, path: Path, root: Path) -> None:
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    metadata = dict(arrow.schema.metadata or {}) | {ROOT_METADATA_KEY: str(root).encode()}
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(arrow.replace_schema_metadata(metadata), path)


def read_manifest(path: Path | str, split: str | None = None) -> tuple[pd.DataFrame, Path]:
    """The usable rows of a manifest (optionally of one split) and the dataset root."""
    arrow = pq.read_table(path)
    root = Path(arrow.schema.metadata[ROOT_METADATA_KEY].decode())
    table = arrow.to_pandas()
    table = table[table["error"].isna()]
    if split is not None:
        table = table[table["split"] == split]
        if table.empty:
            raise DatasetError(f"manifest {path} has no usable images in split '{split}'")
    return table.reset_index(drop=True), root


def image_path(table: pd.DataFrame, root: Path, image_id: int) -> Path:
    """The file of ``image_id`` in a manifest table read by :func:`read_manifest`."""
    return root / table.loc[table["image_id"] == image_id, "path"].item()


def resized_image(path: Path | str, size: int) -> np.ndarray:
    """The RGB image at ``path`` resized to ``size`` pixels square (as the model saw it, uncropped)."""
    return np.asarray(read_rgb(path).resize((size, size), Image.BICUBIC))


def number_of_classes(manifest: pd.DataFrame) -> int:
    return int(manifest["label"].max()) + 1


def read_class_names_file(path: Path | str) -> dict[str, str]:
    """A data set's readable class names (``datasets.<name>.class_names``): one line per class folder,
    ``<folder> <name>`` (ImageNet's LOC_synset_mapping.txt: ``n01440764 tench, Tinca tinca``); blank lines
    and lines starting with ``#`` are skipped."""
    names = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        folder, _, name = line.partition(" ")
        if not name.strip():
            raise DatasetError(f"class names file {path}, line {number}: expected '<folder> <name>', got {line!r}")
        names[folder] = name.strip()
    return names


def class_names(manifest: pd.DataFrame, names_file: Path | str | None = None) -> list[str]:
    """Each label's class name in label order: the class folder's name, or what ``names_file``
    (:func:`read_class_names_file`) calls that folder."""
    folders = manifest.drop_duplicates("label").set_index("label")["class_name"]
    readable = read_class_names_file(names_file) if names_file else {}
    names = [str(folders.get(label, label)) for label in range(number_of_classes(manifest))]
    return [readable.get(name, name) for name in names]


class ManifestDataset:
    """Images of one manifest split, in manifest order: (image tensor, label, image_id).

    A map-style dataset for torch's DataLoader (``__getitem__`` and ``__len__``), written without
    torch's base class so that reading a manifest (dataset jobs, tables, notebooks) does not import torch.
    With ``cache_images`` every image is decoded once and kept (as RGB, before the transform, so random
    augmentation still differs per epoch): for small datasets read many times (``data.cache_images``).
    """

    def __init__(self, manifest: pd.DataFrame, root: Path, transform: Callable, cache_images: bool = False):
        self.paths = [root / p for p in manifest["path"]]
        self.labels = manifest["label"].to_numpy(np.int64)
        self.image_ids = manifest["image_id"].to_numpy(np.int64)
        self.transform = transform
        self.decoded: dict[int, Image.Image] | None = {} if cache_images else None

    def __len__(self) -> int:
        return len(self.paths)

    def rgb_image(self, index: int) -> Image.Image:
        if self.decoded is not None and index in self.decoded:
            return self.decoded[index]
        try:
            image = read_rgb(self.paths[index])
        except Exception as exc:
            raise DatasetError(f"cannot read image {self.paths[index]}: {exc}") from exc
        if self.decoded is not None:
            self.decoded[index] = image
        return image

    def __getitem__(self, index: int):
        return self.transform(self.rgb_image(index)), self.labels[index], self.image_ids[index]


def split_dataset(manifest: str | Path, split: str, transform, cache_images: bool = False) -> ManifestDataset:
    table, root = read_manifest(manifest, split=split)
    return ManifestDataset(table, root, transform, cache_images)


def mean_colour(manifest_path: Path | str, split: str = "train", threads: int = 4) -> np.ndarray:
    """The data set's mean colour: per RGB channel, the mean over the split's usable images of each
    image's mean pixel, in [0, 1] (every image counts once, whatever its size)."""
    table, root = read_manifest(manifest_path, split)

    def image_mean(path: str) -> np.ndarray:
        return np.asarray(read_rgb(root / path), dtype=np.float64).mean(axis=(0, 1)) / 255.0

    with ThreadPoolExecutor(threads) as pool:
        means = list(tqdm(pool.map(image_mean, table["path"]), total=len(table), desc="mean colour", mininterval=5))
    return np.mean(means, axis=0)
