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
    """``record`` (config.experiment_record) with the model's patch count and the code revision."""
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


def canonical_params_records(metadata: str | Path) -> int:
    """Rewrite Snakemake's params records in ``metadata`` (``.snakemake/metadata``) in canonical form.

    Snakemake (its default, file-based persistence) stores each output's params as the ``repr`` of
    every value and reruns a job whose reprs changed. Records written before params passed through
    :func:`config.canonical` hold dicts in config-file order; they are re-spelled here (same values,
    keys sorted), so that the first run of today's code reruns nothing it would not rerun anyway. A
    value that is not a Python literal is left as it is. Returns the number of records rewritten.
    """
    import ast
    import os

    from patchinteract.config import canonical

    def respelled(text: str) -> str:
        try:
            return repr(canonical(ast.literal_eval(text)))
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return text

    rewritten = 0
    # a record's name is its output path in base64, split into folders ('@…') where it is long
    for path in sorted(p for p in Path(metadata).rglob("*") if p.is_file() and not p.name.startswith(".")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # being written by a running job, or not a record
        params = record.get("params") if isinstance(record, dict) else None
        if not isinstance(params, list):
            continue
        canonical_params = sorted(respelled(p) if isinstance(p, str) else p for p in params)
        if canonical_params == params:
            continue
        record["params"] = canonical_params
        partial = path.with_name(f".{path.name}.canonical")
        partial.write_text(json.dumps(record))
        os.replace(partial, path)  # atomic: a record is never half written
        rewritten += 1
    return rewritten
