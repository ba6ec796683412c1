"""Checks of a config that JSON Schema cannot express, and config fingerprints.

The Snakefile validates the config against ``config/schema.yaml`` first
(types, ranges, unknown keys, defaults), then calls :func:`check_config`, so
every problem is reported, by key, before any job starts.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

WEIGHT_CHOICES = ("none", "timm")


class ConfigError(ValueError):
    """The config names something impossible; the message lists each problem by key."""


def _weights_problems(key: str, value: str, model: str, allow_none: bool) -> list[str]:
    from patchinteract.models import has_pretrained_weights

    if value == "none":
        return [] if allow_none else [f"{key}: 'none' is not allowed here"]
    if value == "timm":
        if not has_pretrained_weights(model):
            return [f"{key}: timm has no pretrained weights for model '{model}'"]
        return []
    if not Path(value).is_file():
        return [f"{key}: weights file '{value}' does not exist (use none, timm, or a .pth/.safetensors path)"]
    return []


def config_problems(config: dict) -> list[str]:
    """Every semantic problem of a schema-valid config, as 'key: what is wrong'."""
    from patchinteract.models import is_known_model

    problems = []
    for name, dataset in config["datasets"].items():
        key = f"datasets.{name}"
        if dataset["source"] == "imagefolder":
            if "path" not in dataset:
                problems.append(f"{key}.path: required for source imagefolder")
            elif not Path(dataset["path"]).is_dir():
                problems.append(f"{key}.path: dataset folder '{dataset['path']}' does not exist")
        if dataset["source"] == "url":
            problems += [f"{key}.{k}: required for source url" for k in ("url", "sha256") if k not in dataset]
    for name, experiment in config["experiments"].items():
        key = f"experiments.{name}"
        if experiment["dataset"] not in config["datasets"]:
            problems.append(
                f"{key}.dataset: '{experiment['dataset']}' is not one of datasets {sorted(config['datasets'])}"
            )
        if experiment["img_size"] % experiment["patch_size"]:
            problems.append(
                f"{key}.img_size: {experiment['img_size']} is not divisible by patch_size {experiment['patch_size']}"
            )
        if not is_known_model(experiment["model"]):
            problems.append(f"{key}.model: '{experiment['model']}' is not a timm model name nor VisionTransformer")
            continue
        problems += _weights_problems(f"{key}.pretrained", experiment["pretrained"], experiment["model"], True)
        if experiment["pretrained"] == "none":
            if "train_baseline" not in experiment:
                problems.append(f"{key}.train_baseline: required when pretrained is none")
            else:
                init = experiment["train_baseline"]["init"]
                problems += _weights_problems(f"{key}.train_baseline.init", init, experiment["model"], True)
    return problems


def check_config(config: dict) -> None:
    """Raise ConfigError listing every problem of ``config`` (after schema validation)."""
    problems = config_problems(config)
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))


def weights_source(value: str) -> str:
    """'none', 'timm' or 'path' for a pretrained/init setting."""
    return value if value in WEIGHT_CHOICES else "path"


def fingerprint(*parts) -> str:
    """Short stable hash of JSON-serialisable settings (the config hash in metrics and stores)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def experiment_fingerprint(config: dict, experiment: str) -> str:
    """Hash of everything that determines an experiment's baseline and stores."""
    settings = config["experiments"][experiment]
    return fingerprint(settings, config["datasets"][settings["dataset"]], config["seed"])


def share_library_with_jobs(repository: str) -> None:
    """Put the repository (where ``patchinteract/`` lives) on the PYTHONPATH that jobs inherit."""
    paths = [repository, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
