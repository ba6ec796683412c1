"""The bill of a run, said before any job starts: what each training kind of the config will process
(epochs × train images per run), and which companion analyses run or are left out.

Snakemake's own plan lists the jobs of every rule; this adds what a job count does not show: how much
work each training job is. A data set's train images are counted from its manifest once it exists, else
from ``expected_counts``, else (the digits) from its settings; before that they are unknown ("?")."""

from __future__ import annotations

import math
from pathlib import Path

from patchinteract import grid, paths


def train_images(config: dict, dataset: str) -> int | None:
    """The train split's image count of ``dataset``: from its manifest, its ``expected_counts``, or (the
    digits) its settings; None when it is not known before the manifest is built."""
    manifest = Path(paths.manifest(dataset))
    if manifest.is_file():
        from patchinteract.data.manifest import read_manifest

        return len(read_manifest(manifest, split="train")[0])
    settings = config["datasets"][dataset]
    if "train" in settings.get("expected_counts", {}):
        return int(settings["expected_counts"]["train"])
    if settings["source"] == "digits":  # scikit-learn's 1,797 digits, 10 classes, stratified split
        images = 10 * settings["per_class"] if settings.get("per_class") else 1797
        return images - math.ceil(images * settings["val_fraction"])
    return None


def image_steps(runs: int, epochs: int, images: int | None) -> str:
    """``runs × epochs × images = total`` image-steps (``?`` while the images are unknown)."""
    total = f"{runs * epochs * images:,}" if images is not None else "?"
    known = images if images is not None else "?"
    return f"{runs} run{'s' * (runs != 1)} × {epochs} epoch{'s' * (epochs != 1)} × {known} images = {total}"


def training_bill(config: dict) -> list[str]:
    """One line per experiment and training kind that ``rule all`` runs, and one per analysis left out."""
    lines = []
    seeds = len(config["seeds"])
    for experiment, settings in config["experiments"].items():
        images = train_images(config, grid.dataset_of(config, experiment))
        if grid.weights_source(settings["pretrained"]) == "none":
            epochs = settings["train_baseline"]["epochs"]
            lines.append(f"{experiment}: baseline training, {image_steps(1, epochs, images)}")
        branches = grid.retrain_branches(config, experiment)
        if branches:
            runs = len(branches) * seeds
            epochs = config["retrain"]["recipe"]["epochs"]
            lines.append(f"{experiment}: retraining of {len(branches)} branches, {image_steps(runs, epochs, images)}")
        if config["pretraining"]["enabled"]:
            runs = len(grid.pretraining_runs(config))
            pretraining_images = train_images(config, grid.pretraining_dataset(config, experiment))
            epochs = config["pretraining"]["recipe"]["epochs"]
            lines.append(f"{experiment}: MAE pre-training, {image_steps(runs, epochs, pretraining_images)}")
    left_out = [name for name in ("heads", "semantics", "pretraining") if not config[name]["enabled"]]
    lines += [f"not run: {name} ({name}.enabled is false)" for name in left_out]
    return lines
