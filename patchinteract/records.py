"""What a job records beside its outputs: JSON files, the code revision and the settings' hash."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from patchinteract.config import experiment_fingerprint


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
    from patchinteract.models.vit import patch_grid

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
