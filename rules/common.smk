# Config checks, wildcard constraints and input functions shared by the rules.
import sys
from pathlib import Path

# The library lives beside the Snakefile: importable here and in every job, with or
# without `pip install -e .` (e.g. inside the conda env of --software-deployment-method conda).
sys.path.insert(0, workflow.basedir)

import patchinteract  # torchvision compatibility shim before anything imports timm
from patchinteract.stores.chunked import store_folder
from patchinteract.config import (
    check_config,
    experiment_fingerprint,
    retrain_fingerprint,
    retrain_init,
    retrain_methods,
    timm_model_name,
    weights_source,
)
from patchinteract.layout import retrain_branches, value_label
from patchinteract.runtime import share_library_with_jobs

share_library_with_jobs(workflow.basedir)

check_config(config)

RESULTS = "results"
# Software of every rule, for --software-deployment-method conda (path relative to rules/).
CONDA_ENV = "../environment.yml"
LOGS = f"{RESULTS}/logs"


def zarr_store(path):
    """A Zarr store as a rule's input or output: its root metadata file ``<path>/zarr.json``.

    As a directory() output the store would get Snakemake's .snakemake_timestamp file,
    which zarr warns about whenever the store is listed. Scripts open store_folder(...).
    """
    return f"{path}/zarr.json"


def one_of(names):
    """Regex matching exactly the given names (never matches when the list is empty)."""
    return "|".join(map(re.escape, names)) if names else "(?!x)x"


def datasets_from(source):
    return [name for name, d in config["datasets"].items() if d["source"] == source]


def experiments_by_weights(kind):
    return [
        name
        for name, e in config["experiments"].items()
        if weights_source(e["pretrained"]) == kind
    ]


ALPHAS = sorted({*config["alphas"], *config["dip_alphas"], config["winft"]["alpha"]})
BETAS = sorted({*config["betas"], config["winft"]["beta"]})


wildcard_constraints:
    experiment=one_of(config["experiments"]),
    dataset=one_of(config["datasets"]),
    split="train|val",
    alpha=one_of([value_label(a) for a in ALPHAS]),
    beta=one_of([value_label(b) for b in BETAS]),


def resources_of(kind):
    """Scheduler resources of a kind of job (config key resources.<kind>).

    A retried job (the Slurm profile retries once) gets its runtime times the attempt,
    so a training job killed at its time limit resumes from its checkpoint with more time.
    """
    settings = config["resources"][kind]
    resources = {
        "mem_mb": settings["mem_mb"],
        "runtime": lambda wildcards, attempt: settings["runtime"] * attempt,
        "gpu": settings["gpus"],
    }
    if settings.get("partition"):
        resources["slurm_partition"] = settings["partition"]
    if settings["gpus"] and settings.get("gpu_model"):
        resources["gpu_model"] = settings["gpu_model"]
    return resources


def threads_of(kind):
    return config["resources"][kind]["cpus"]


def dataset_of(experiment):
    return config["experiments"][experiment]["dataset"]


def manifest_of(wildcards):
    return f"{RESULTS}/datasets/{dataset_of(wildcards.experiment)}/manifest.parquet"


def baseline_metrics():
    return expand(
        f"{RESULTS}/{{experiment}}/model/metrics.json", experiment=config["experiments"]
    )


def interaction_stores():
    return expand(
        zarr_store(f"{RESULTS}/{{experiment}}/interaction/{{split}}.zarr"),
        experiment=config["experiments"],
        split=config["attention"]["splits"],
    )


def dataset_images(wildcards):
    """The images folder a manifest needs, unless the dataset is a local ImageFolder."""
    if config["datasets"][wildcards.dataset]["source"] == "imagefolder":
        return {}
    return {"images": f"{RESULTS}/datasets/{wildcards.dataset}/images"}


def init_setting(experiment, purpose):
    """The init value of baseline training or of retraining."""
    if purpose == "baseline":
        return config["experiments"][experiment]["train_baseline"]["init"]
    return retrain_init(config, experiment)


def init_model_name(experiment, purpose):
    return timm_model_name(
        init_setting(experiment, purpose), config["experiments"][experiment]["model"]
    )


def init_input(experiment, purpose):
    """Starting weights: none, the hub's (fetched by a local rule), the baseline, or a file."""
    init = init_setting(experiment, purpose)
    source = weights_source(init)
    if source == "none":
        return {}
    if source == "timm":
        return {"init": f"{RESULTS}/{experiment}/weights/{purpose}_init.safetensors"}
    if source == "baseline":
        return {"init": f"{RESULTS}/{experiment}/model/baseline.safetensors"}
    return {"init": init}


def baseline_init_weights(wildcards):
    return init_input(wildcards.experiment, "baseline")


def mask_store(experiment, split, kind, value):
    prefix = "window_a" if kind == "window" else "keep_b"
    return zarr_store(f"{RESULTS}/{experiment}/masks/{split}/{prefix}{value}.zarr")


def awd_branch(wildcards):
    return f"awd_a{wildcards.alpha}"


def awd_dip_branch(wildcards):
    return f"awd_dip_a{wildcards.alpha}_b{wildcards.beta}"


def branch_hash(branch):
    """Params function: the config hash of a branch (a name, or a function of the wildcards)."""

    def config_hash(wildcards):
        name = branch(wildcards) if callable(branch) else branch
        return retrain_fingerprint(config, wildcards.experiment, name)

    return config_hash


def retrain_inputs(wildcards):
    """Manifest, initial weights and the branch's masks for train and val."""
    inputs = {"manifest": manifest_of(wildcards)} | init_input(
        wildcards.experiment, "retrain"
    )
    for split in ("train", "val"):
        if "alpha" in wildcards.keys():
            inputs[f"window_{split}"] = mask_store(
                wildcards.experiment, split, "window", wildcards.alpha
            )
        if "beta" in wildcards.keys():
            inputs[f"keep_{split}"] = mask_store(
                wildcards.experiment, split, "keep", wildcards.beta
            )
    return inputs


def retrain_metrics():
    return [
        f"{RESULTS}/{experiment}/retrain/{branch}/metrics.json"
        for experiment in config["experiments"]
        for branch in retrain_branches(config, experiment)
    ]


def field_store(experiment, split, alpha, beta):
    return zarr_store(
        f"{RESULTS}/{experiment}/masks/{split}/fields_a{value_label(alpha)}_b{value_label(beta)}.zarr"
    )


def winft_inputs(wildcards):
    """Manifest, initial weights and the responsive fields (WinFT's ground truth) for train and val."""
    settings = config["winft"]
    fields = {
        f"fields_{split}": field_store(
            wildcards.experiment, split, settings["alpha"], settings["beta"]
        )
        for split in ("train", "val")
    }
    return (
        {"manifest": manifest_of(wildcards)}
        | init_input(wildcards.experiment, "retrain")
        | fields
    )


def field_stores():
    """Responsive fields of every (dip_alpha, beta) pair, for the figures."""
    return [
        field_store(experiment, split, alpha, beta)
        for experiment in config["experiments"]
        for split in config["attention"]["splits"]
        for alpha in config["dip_alphas"]
        for beta in config["betas"]
    ]


def figure_attention_store(wildcards):
    """The val attention that Fig. 3 draws: the whole store, or with store none the figure images'."""
    name = "val" if config["attention"]["store"] == "zarr" else "val_figures"
    return zarr_store(f"{RESULTS}/{wildcards.experiment}/attention/{name}.zarr")


def figures():
    """Every figure file of the configured grid."""
    experiments = config["experiments"]
    targets = [f"{RESULTS}/figures/accuracy_vs_interactions.png"]
    with_val = "val" in config["attention"]["splits"]
    if config["betas"] and config["dip_alphas"] and with_val:
        targets += [
            f"{RESULTS}/figures/{experiment}/{name}.png"
            for experiment in experiments
            for name in ("fig5_interaction_map", "fig9_image_panels")
        ]
    if with_val:
        targets += [
            f"{RESULTS}/figures/{experiment}/fig3_attention_rows.png"
            for experiment in experiments
        ]
    if config["winft"]["figure_images"] > 0:
        targets += [
            f"{RESULTS}/figures/{experiment}/winft_windows.png"
            for experiment in experiments
            if "winft" in retrain_methods(config, experiment)
        ]
    return targets
