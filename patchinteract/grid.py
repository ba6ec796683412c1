"""What a validated config means: each experiment's branches and seeds, the α and β that have mask
stores, the weights each training starts from, the settings each stage reads, and the hashes that key
results. The one home of config meaning: rules, checks and scripts ask here; defaults live only in
``config/schema.yaml`` (the Snakefile validates before anything reads the config).
"""

from __future__ import annotations

import hashlib
import json

from patchinteract.paths import VIT_BRANCH, WINFT_BRANCH, awd_branch, awd_dip_branch, value_label

WEIGHT_CHOICES = ("none", "timm", "baseline")
TIMM_PREFIX = "timm:"
# Experiment keys that change only its retraining: not part of the baseline's and the stores' hash.
RETRAIN_ONLY_KEYS = ("retrain_methods", "retrain_init")


# --------------------------------------------------------------------------- weights


def weights_source(value: str) -> str:
    """'none', 'timm', 'baseline' or 'path' for a pretrained/init setting ('timm:<name>' is 'timm')."""
    if value.startswith(TIMM_PREFIX):
        return "timm"
    return value if value in WEIGHT_CHOICES else "path"


def timm_model_name(value: str, experiment_model: str) -> str:
    """The timm model whose hub weights 'timm' (the experiment's model) or 'timm:<name>' means."""
    return value[len(TIMM_PREFIX) :] if value.startswith(TIMM_PREFIX) else experiment_model


def retrain_init(config: dict, experiment: str) -> str:
    """Initial weights of an experiment's retraining jobs (retrain_init overrides the recipe's)."""
    return config["experiments"][experiment].get("retrain_init", config["retrain"]["recipe"]["init"])


def training_init(config: dict, experiment: str, purpose: str) -> str:
    """The init setting of an experiment's baseline training (purpose baseline) or retraining (retrain)."""
    if purpose == "baseline":
        return config["experiments"][experiment]["train_baseline"]["init"]
    return retrain_init(config, experiment)


def experiments_with_weights(config: dict, source: str) -> list[str]:
    """Experiments whose baseline comes from ``source`` (none: trained, timm: the hub, path: a file)."""
    return [name for name, e in config["experiments"].items() if weights_source(e["pretrained"]) == source]


# --------------------------------------------------------------------------- data sets and models


def dataset_of(config: dict, experiment: str) -> str:
    return config["experiments"][experiment]["dataset"]


def datasets_from(config: dict, source: str) -> list[str]:
    """Data sets of one source kind (digits, url, imagefolder)."""
    return [name for name, dataset in config["datasets"].items() if dataset["source"] == source]


def model_settings(config: dict, experiment: str) -> dict:
    """What builds an experiment's ViT: the timm name, input and patch size, extra arguments."""
    settings = config["experiments"][experiment]
    return {key: settings.get(key) for key in ("model", "img_size", "patch_size", "model_args")}


# --------------------------------------------------------------------------- the branch grid


def retrain_methods(config: dict, experiment: str) -> list[str]:
    """Retraining methods of an experiment (retrain_methods overrides retrain.methods)."""
    return config["experiments"][experiment].get("retrain_methods", config["retrain"]["methods"])


def retrain_branches(config: dict, experiment: str) -> list[str]:
    """Branch names of an experiment's grid: vit, awd_a<α>, awd_dip_a<α>_b<β>, winft."""
    methods = retrain_methods(config, experiment)
    branches = [VIT_BRANCH] if "vit" in methods else []
    if "awd" in methods:
        branches += [awd_branch(a) for a in config["alphas"]]
    if "awd_dip" in methods:
        branches += [awd_dip_branch(a, b) for a in config["dip_alphas"] for b in config["betas"]]
    if "winft" in methods:
        branches.append(WINFT_BRANCH)
    return branches


def branch_settings(config: dict, method: str) -> dict:
    """The options a kind of branch reads (WinFT: the winft section)."""
    if method == "winft":
        return config["winft"]
    return {key: config["retrain"][key] for key in ("cls_in_window", "dip_mode")}


def mask_alphas(config: dict) -> list[float]:
    """Every α that has window stores: alphas, dip_alphas and WinFT's."""
    return sorted({*config["alphas"], *config["dip_alphas"], config["winft"]["alpha"]})


def mask_betas(config: dict) -> list[float]:
    """Every β that has keep stores: betas, WinFT's, and those the figures show."""
    return sorted({*config["betas"], config["winft"]["beta"], *config["figures"]["dip_betas"]})


def kept_token_figure_betas(config: dict) -> list[float]:
    """The β whose kept tokens Fig. 6 shows: those of the figures, and every β of the grid."""
    return sorted({*config["figures"]["dip_betas"], *config["betas"]})


def figure_field_values(config: dict) -> tuple[float, float]:
    """The (α, β) whose responsive fields Fig. 5, 7 and 9 show: the first dip_alpha and beta."""
    return config["dip_alphas"][0], config["betas"][0]


def value_with_label(values: list[float], label: str) -> float:
    """The config's own value among ``values`` whose file-name label is ``label`` (a job's {alpha} or
    {beta}): the value crosses from the config to the job as the config spells it, never read back
    from its label (config checks guarantee one value per label)."""
    for value in values:
        if value_label(value) == label:
            return value
    raise KeyError(f"no configured value is labelled '{label}' (values: {values})")


# --------------------------------------------------------------------------- records and hashes


def fingerprint(*parts) -> str:
    """Short stable hash of JSON-serialisable settings (the config hash in metrics and stores)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def experiment_record(config: dict, experiment: str) -> dict:
    """The fields every metrics.json and store carries about the experiment, and its settings' hash."""
    settings = config["experiments"][experiment]
    return {
        "experiment": experiment,
        "dataset": settings["dataset"],
        "model": settings["model"],
        "img_size": settings["img_size"],
        "patch_size": settings["patch_size"],
        "seed": config["seed"],
        "config_hash": experiment_fingerprint(config, experiment),
    }


def experiment_fingerprint(config: dict, experiment: str) -> str:
    """Hash of everything that determines an experiment's baseline and stores (not its retraining)."""
    settings = {k: v for k, v in config["experiments"][experiment].items() if k not in RETRAIN_ONLY_KEYS}
    return fingerprint(settings, config["datasets"][settings["dataset"]], config["seed"])


def retrain_fingerprint(config: dict, experiment: str, branch: str, seed: int) -> str:
    """Hash of everything that determines one seed of a retrained branch: adding another method or
    seed, or changing WinFT's settings, leaves the other runs' hashes alone."""
    recipe = {k: v for k, v in config["retrain"].items() if k != "methods"}
    winft = config["winft"] if branch == "winft" else None
    init = retrain_init(config, experiment)
    return fingerprint(experiment_fingerprint(config, experiment), recipe, init, winft, branch, seed)
