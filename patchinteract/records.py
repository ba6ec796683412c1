"""What a job records beside its outputs: JSON files, the code revision and the settings' hash."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path


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


def model_record(record: dict, vit) -> dict:
    """``record`` (grid.experiment_record) with the model's patch count and the code revision."""
    from patchinteract.models.vit import patch_grid

    rows, cols = patch_grid(vit)
    return record | {"n_patches": rows * cols, "code_revision": code_revision()}


def store_record(record: dict, split: str) -> dict:
    """Attributes an inference store carries about its run: experiment, split, model, config hash, code revision."""
    return {
        "experiment": record["experiment"],
        "split": split,
        "model": record["model"],
        "config_hash": record["config_hash"],
        "code_revision": code_revision(),
    }


def write_json(path: str | Path, data: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
