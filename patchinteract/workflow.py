"""Glue shared by the workflow scripts: logging to the rule's log, models from config, JSON."""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import sys
from pathlib import Path

import torch

from patchinteract.config import experiment_fingerprint
from patchinteract.data import ManifestDataset, number_of_classes, read_manifest
from patchinteract.models import create_vit, eval_transform, load_weights


@contextlib.contextmanager
def logged_to(log_path: str | Path | None):
    """Send logging, warnings and progress bars (stderr) to the rule's log file."""
    handle = None
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handle = open(log_path, "a", buffering=1)
        previous, sys.stderr = sys.stderr, handle
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True
    )
    logging.captureWarnings(True)
    try:
        yield logging.getLogger("patchinteract")
    except BaseException:
        logging.getLogger("patchinteract").exception("failed")
        raise
    finally:
        if handle is not None:
            sys.stderr = previous
            handle.close()


def build_model(config: dict, experiment: str, num_classes: int, pretrained: bool = False):
    settings = config["experiments"][experiment]
    return create_vit(
        settings["model"],
        img_size=settings["img_size"],
        patch_size=settings["patch_size"],
        num_classes=num_classes,
        model_args=settings.get("model_args"),
        pretrained=pretrained,
    )


def load_baseline(config: dict, experiment: str, weights: str | Path, manifest: str | Path):
    """The experiment's baseline model with its weights, sized for the manifest's classes."""
    table, _root = read_manifest(manifest)
    model = build_model(config, experiment, number_of_classes(table))
    load_weights(model, weights)
    return model.eval()


def split_dataset(manifest: str | Path, split: str, transform) -> ManifestDataset:
    table, root = read_manifest(manifest, split=split)
    return ManifestDataset(table, root, transform)


def eval_dataset(model, manifest: str | Path, split: str) -> ManifestDataset:
    return split_dataset(manifest, split, eval_transform(model))


def code_revision() -> str:
    """The git commit of the code (with '-dirty' for local changes), or 'unknown'."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def provenance(config: dict, experiment: str) -> dict:
    return {"config_hash": experiment_fingerprint(config, experiment), "code_revision": code_revision()}


def model_record(config: dict, experiment: str, vit) -> dict:
    """The fields every metrics.json carries about the experiment, its model and the code."""
    from patchinteract.models import patch_grid

    settings = config["experiments"][experiment]
    rows, cols = patch_grid(vit)
    return {
        "experiment": experiment,
        "dataset": settings["dataset"],
        "model": settings["model"],
        "img_size": settings["img_size"],
        "patch_size": settings["patch_size"],
        "n_patches": rows * cols,
        "seed": config["seed"],
        **provenance(config, experiment),
    }


def write_json(path: str | Path, data: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def torch_threads(threads: int) -> None:
    """Use the cores the scheduler gave the job, not every core of the node."""
    torch.set_num_threads(max(1, int(threads)))
