"""The images the head analyses run on (``heads.sample``): a random draw from the split, or the paper's
sample (Li et al. Sec. 6): the classes the baseline predicts best and worst, a number of images of each.

Every stage of the head analyses (head-attention store, importance by pruning, the explorer's images) reads
the same choice from ``heads/<split>/sample_images.parquet``; ``sample.parquet`` says which classes it
holds and why.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from patchinteract.data.manifest import class_names


def per_class_top1(predictions: pd.DataFrame) -> pd.Series:
    """Top-1 (%) of each class among the baseline's per-image predictions (``label``, ``correct``)."""
    return 100.0 * predictions.groupby("label")["correct"].mean().rename("top1")


def best_worst_classes(top1: pd.Series, classes: int) -> pd.DataFrame:
    """The ``classes - classes // 2`` classes of highest top-1 and the ``classes // 2`` of lowest (the paper:
    10 and 10 of 20), ties broken by class index; columns class, top1, group (best or worst)."""
    if classes > len(top1):
        raise ValueError(
            f"heads.sample.classes: {classes} classes requested, but the baseline's predictions have {len(top1)}"
        )
    ranked = pd.DataFrame({"class": top1.index.astype(int), "top1": top1.to_numpy(np.float64)})
    best = ranked.sort_values(["top1", "class"], ascending=[False, True]).head(classes - classes // 2)
    rest = ranked[~ranked["class"].isin(best["class"])]
    worst = rest.sort_values(["top1", "class"], ascending=[True, True]).head(classes // 2)
    return pd.concat([best.assign(group="best"), worst.assign(group="worst")], ignore_index=True)


def images_of_classes(labels: np.ndarray, chosen: pd.DataFrame, per_class: int | str, seed: int, split: str):
    """Positions (in split order) of ``per_class`` images of each chosen class, drawn with ``seed`` within
    the class (all of them for ``"all"``). A class with fewer images is an error naming it."""
    rng = np.random.default_rng(seed)
    positions = []
    for label in chosen["class"]:
        members = np.flatnonzero(labels == label)
        if per_class == "all":
            positions.append(members)
            continue
        if len(members) < int(per_class):
            raise ValueError(
                f"heads.sample.per_class: {per_class} images per class requested, but class {label} has "
                f"{len(members)} in split '{split}'"
            )
        positions.append(rng.choice(members, int(per_class), replace=False))
    return np.sort(np.concatenate(positions)) if positions else np.array([], dtype=np.int64)


def image_subset(n_images: int, setting: int | str, seed: int, key: str = "heads.images") -> np.ndarray:
    """Sorted positions of the analysed images: all (``"all"``), or ``setting`` drawn without replacement
    with ``seed``. Raises ValueError naming ``key`` when the split has fewer images."""
    if setting == "all":
        return np.arange(n_images)
    if not 1 <= int(setting) <= n_images:
        raise ValueError(f"{key}: {setting} images requested, but the split has {n_images}")
    return np.sort(np.random.default_rng(seed).choice(n_images, int(setting), replace=False))


def analysed_images(
    split_table: pd.DataFrame, predictions: pd.DataFrame, sample: dict, images: int | str, seed: int, split: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(sample_images, sample): the analysed images of a split (``position`` in split order, ``image_id``,
    ``label``) and per class in them its name, baseline top-1, group (best, worst or random) and number
    of images. ``split_table``: the split's manifest rows in order; ``sample``: heads.sample;
    ``images``: heads.images (the random draw's size)."""
    labels = split_table["label"].to_numpy()
    top1 = per_class_top1(predictions)
    if sample["kind"] == "best_worst":
        chosen = best_worst_classes(top1, sample["classes"])
        positions = images_of_classes(labels, chosen, sample["per_class"], seed, split)
    else:
        positions = image_subset(len(split_table), images, seed)
        present = np.unique(labels[positions])
        chosen = pd.DataFrame({"class": present, "top1": top1.reindex(present).to_numpy(), "group": "random"})
    picked = split_table.iloc[positions]
    sample_images = pd.DataFrame(
        {"position": positions, "image_id": picked["image_id"].to_numpy(), "label": picked["label"].to_numpy()}
    )
    counts = sample_images["label"].value_counts()
    names = dict(enumerate(class_names(split_table)))
    classes = chosen.assign(name=chosen["class"].map(names), images=chosen["class"].map(counts).fillna(0).astype(int))
    return sample_images, classes[["class", "name", "top1", "group", "images"]]


def sample_positions(sample_images: str) -> np.ndarray:
    """Positions in the split (manifest order) of the analysed images, from ``sample_images.parquet``."""
    return pd.read_parquet(sample_images, columns=["position"])["position"].to_numpy()


def explorer_images(analysed: np.ndarray, images: int | str) -> np.ndarray:
    """The explorer's images: the first ``images`` of the head analyses' (ids or positions, in the sample's
    order; "all": every one)."""
    if images == "all":
        return analysed
    if not isinstance(images, int) or images < 1:
        raise ValueError(f"explorer.images must be 'all' or a positive count, got {images!r}")
    return analysed[:images]
