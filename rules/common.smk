# Config checks, wildcard constraints, and the params and input functions shared by the rules.
# Paths and branch names come from patchinteract/layout.py; settings reach jobs only through
# params (every value that can change a result) and one Execution value (how the job runs).
import functools
import re
from pathlib import Path

from patchinteract import layout
from patchinteract.config import (
    canonical,
    check_config,
    experiment_fingerprint,
    experiment_record,
    figure_and_mask_betas,
    mask_alphas,
    model_settings,
    retrain_fingerprint,
    retrain_init,
    timm_model_name,
    weights_source,
)
from patchinteract.layout import (
    LOGS,
    log_file,
    retrain_branches,
    retrain_methods,
    value_label,
    zarr_target,
)
from patchinteract.runtime import Execution, share_library_with_jobs
from patchinteract.stores.chunked import store_folder

share_library_with_jobs(workflow.basedir)

check_config(config)

# Software of every rule, for --software-deployment-method conda (path relative to rules/).
CONDA_ENV = "../environment.yml"

# Scheduling priorities. The baseline gates every later stage: it starts first. Jobs on the way to
# retraining (attention, U, masks, retraining) start before the analyses and figures when both are
# ready: the long training jobs then begin as early as they can and the short jobs fill the cores at
# the end. Without them, the demo ended with one core idle for ~70 s.
BASELINE_FIRST = 2
RETRAINING_PATH = 1


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


wildcard_constraints:
    experiment=one_of(config["experiments"]),
    dataset=one_of(config["datasets"]),
    split="train|val",
    alpha=one_of([value_label(a) for a in mask_alphas(config)]),
    beta=one_of([value_label(b) for b in figure_and_mask_betas(config)]),
    seed=one_of([str(seed) for seed in config["seeds"]]),


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


def execution(batch_size=1, dask=None):
    """How a job runs (device, loader workers, batch size, Dask): not a rerun trigger."""
    return Execution(
        config["device"],
        config["data"]["loader_workers"],
        batch_size,
        dask or {},
        config["data"]["cache_images"],
    )


# ----------------------------------------------------------------------- params functions


def canonical_params(params):
    """Make every value of a rule's params canonical (config.canonical), functions' results too.

    Snakemake reruns a job whose params' reprs changed; a dict's repr follows its insertion order,
    which a reordered or script-written config changes without changing what it means.
    """

    def canonical_value(value):
        if not callable(value):
            return canonical(value)

        # wraps keeps the signature: Snakemake passes the function what it asks for
        @functools.wraps(value)
        def canonical_result(*args, **kwargs):
            return canonical(value(*args, **kwargs))

        return canonical_result

    for index, value in enumerate(params):
        params[index] = canonical_value(value)
    for name, value in list(params.items()):
        setattr(params, name, canonical_value(value))


def model_of(wildcards):
    return model_settings(config, wildcards.experiment)


def record_of(wildcards):
    return experiment_record(config, wildcards.experiment)


def dataset_settings(wildcards):
    return config["datasets"][wildcards.dataset]


# ----------------------------------------------------------------------- input functions


def dataset_of(experiment):
    return config["experiments"][experiment]["dataset"]


def manifest_of(wildcards):
    return layout.manifest(dataset_of(wildcards.experiment))


def dataset_images(wildcards):
    """The images folder a manifest needs, unless the dataset is a local ImageFolder."""
    if config["datasets"][wildcards.dataset]["source"] == "imagefolder":
        return {}
    return {"images": layout.dataset_images(wildcards.dataset)}


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
        return {"init": layout.init_weights(experiment, purpose)}
    if source == "baseline":
        return {"init": layout.baseline_weights(experiment)}
    return {"init": init}


def baseline_init_weights(wildcards):
    return init_input(wildcards.experiment, "baseline")


def awd_branch(wildcards):
    return layout.awd_branch(wildcards.alpha)


def awd_dip_branch(wildcards):
    return layout.awd_dip_branch(wildcards.alpha, wildcards.beta)


def branch_output(branch, name):
    """A retraining rule's file: results/{experiment}/retrain/<branch>/seed{seed}/<name>."""
    return layout.branch_file("{experiment}", branch, "{seed}", name)


def retrain_seed(wildcards):
    return int(wildcards.seed)


def branch_hash(branch):
    """Params function: the config hash of one seed of a branch (a name, or a function of the wildcards)."""

    def config_hash(wildcards):
        name = branch(wildcards) if callable(branch) else branch
        return retrain_fingerprint(
            config, wildcards.experiment, name, retrain_seed(wildcards)
        )

    return config_hash


def retrain_inputs(wildcards):
    """Manifest, initial weights and the branch's mask stores of train and val: windows (AWD),
    kept tokens (DIP), and for AWD+DIP the val field store, whose O counts kept patches only.
    """
    experiment = wildcards.experiment
    inputs = {"manifest": manifest_of(wildcards)} | init_input(experiment, "retrain")
    for split in layout.SPLITS:
        if "alpha" in wildcards.keys():
            inputs[f"window_{split}"] = zarr_target(
                layout.window_store(experiment, split, wildcards.alpha)
            )
        if "beta" in wildcards.keys():
            inputs[f"keep_{split}"] = zarr_target(
                layout.keep_store(experiment, split, wildcards.beta)
            )
    if "beta" in wildcards.keys():
        inputs["fields_val"] = zarr_target(
            layout.field_store(experiment, "val", wildcards.alpha, wildcards.beta)
        )
    return inputs


def winft_inputs(wildcards):
    """Manifest, initial weights and the responsive fields (WinFT's ground truth) for train and val."""
    settings = config["winft"]
    fields = {
        f"fields_{split}": zarr_target(
            layout.field_store(
                wildcards.experiment, split, settings["alpha"], settings["beta"]
            )
        )
        for split in layout.SPLITS
    }
    return (
        {"manifest": manifest_of(wildcards)}
        | init_input(wildcards.experiment, "retrain")
        | fields
    )


def figure_attention_store(wildcards):
    """The val attention that Fig. 3 draws: the whole store, or with store none the figure images'."""
    if config["attention"]["store"] == "zarr":
        return zarr_target(layout.attention_store(wildcards.experiment, "val"))
    return zarr_target(layout.figure_attention_store(wildcards.experiment, "val"))


def branch_settings(method):
    """The retrain options a kind of branch reads (WinFT: the winft section)."""
    if method == "winft":
        return config["winft"]
    return {key: config["retrain"][key] for key in ("cls_in_window", "dip_mode")}


# The β whose kept tokens Fig. 6 shows: those of the figures, and every β of the grid.
FIG6_BETAS = sorted({*config["figures"]["dip_betas"], *config["betas"]})


def figure_field_store(wildcards):
    """Fig. 5, 7 and 9 show the responsive fields of the first (dip_alpha, beta)."""
    return zarr_target(
        layout.field_store(
            wildcards.experiment, "val", config["dip_alphas"][0], config["betas"][0]
        )
    )


def figure_keep_stores(betas):
    """Input function: the val keep stores of ``betas``."""
    return lambda wildcards: [
        zarr_target(layout.keep_store(wildcards.experiment, "val", beta))
        for beta in betas
    ]


def head_file(name):
    """An output of the head analyses, as a pattern over {experiment} and {split}."""
    return layout.head_file("{experiment}", "{split}", name)


def head_store(wildcards):
    """The head-attention store of the job's experiment and split."""
    return zarr_target(
        layout.head_file(wildcards.experiment, wildcards.split, "attention.zarr")
    )


def semantics_file(name):
    """An output of the semantic analyses, as a pattern over {experiment} and {split}."""
    return layout.semantics_file("{experiment}", "{split}", name)


def semantics_store(split):
    """Input function: the semantics store of the job's experiment and ``split``."""
    return lambda wildcards: zarr_target(
        layout.semantics_file(wildcards.experiment, split, "semantics.zarr")
    )


def masking_fill(wildcards):
    """The data set's mean colour, where zeroed patches take it (semantics.masking.fill: dataset_mean)."""
    if config["semantics"]["masking"]["fill"] != "dataset_mean":
        return {}
    return {"mean_colour": layout.mean_colour(dataset_of(wildcards.experiment))}


def keypoint_store(wildcards):
    """The keypoint store of the job's experiment and split."""
    return zarr_target(
        layout.semantics_file(wildcards.experiment, wildcards.split, "keypoints.zarr")
    )


# ----------------------------------------------------------------------- targets


def baseline_metrics(name="metrics.json"):
    """The baseline's metrics.json (or, with name, its predictions) of every experiment."""
    return [layout.model_file(experiment, name) for experiment in config["experiments"]]


def interaction_stores():
    return [
        zarr_target(layout.interaction_store(experiment, split))
        for experiment in config["experiments"]
        for split in config["attention"]["splits"]
    ]


def retrain_metrics(name="metrics.json"):
    """metrics.json (or, with name, another file) of every seed of every retrained branch."""
    return [
        layout.branch_file(experiment, branch, seed, name)
        for experiment in config["experiments"]
        for branch in retrain_branches(config, experiment)
        for seed in config["seeds"]
    ]


def field_stores():
    """Responsive fields of every (dip_alpha, beta) pair, for the figures."""
    return [
        zarr_target(layout.field_store(experiment, split, alpha, beta))
        for experiment in config["experiments"]
        for split in config["attention"]["splits"]
        for alpha in config["dip_alphas"]
        for beta in config["betas"]
    ]


def figures():
    """Every figure file of the configured grid."""
    experiments = config["experiments"]
    targets = [layout.figure_file("accuracy_vs_interactions", ".png")]
    with_val = "val" in config["attention"]["splits"]
    if config["betas"] and config["dip_alphas"] and with_val:
        targets += [
            layout.figure_file(name, ".png", experiment)
            for experiment in experiments
            for name in ("fig5_interaction_map", "fig9_image_panels")
        ]
    if with_val:
        targets += [
            layout.figure_file("fig3_attention_rows", ".png", experiment)
            for experiment in experiments
        ]
    if config["winft"]["figure_images"] > 0:
        targets += [
            layout.figure_file("winft_windows", ".png", experiment)
            for experiment in experiments
            if "winft" in retrain_methods(config, experiment)
        ]
    return targets


def head_analyses():
    """Outputs of the head analyses (Li et al.) of every experiment, unless heads.enabled is false."""
    if not config["heads"]["enabled"]:
        return []
    split = config["heads"]["split"]
    targets = []
    for experiment in config["experiments"]:
        targets += [
            layout.table_file(f"head_summary_{experiment}_{split}", ".parquet"),
            layout.head_file(experiment, split, "image_overview.parquet"),
            layout.head_file(experiment, split, "attention_strength.parquet"),
            layout.figure_file(f"fig7_head_importance_{split}", ".png", experiment),
        ]
    return targets


def semantic_analyses():
    """Outputs of the semantic analyses (Wu et al.) of every experiment, unless semantics.enabled is false."""
    if not config["semantics"]["enabled"]:
        return []
    targets = []
    for experiment in config["experiments"]:
        targets += [
            layout.table_file(f"semantics_summary_{experiment}_{split}", ".parquet")
            for split in config["semantics"]["splits"]
        ]
        targets += [
            layout.semantics_file(experiment, "val", "theta_masking.parquet"),
            layout.figure_file("theta_masking", ".png", experiment),
        ]
    return targets


def explorer_inputs(wildcards):
    """Every store and table the explorer page of an experiment reads (split: heads.split)."""
    experiment, split = wildcards.experiment, config["heads"]["split"]
    attention = (
        layout.attention_store(experiment, split)
        if config["attention"]["store"] == "zarr"
        else layout.explorer_attention_store(experiment, split)
    )
    inputs = {
        "manifest": manifest_of(wildcards),
        "attention": zarr_target(attention),
        "interaction": zarr_target(layout.interaction_store(experiment, split)),
    }
    inputs |= {
        f"window_{value_label(alpha)}": zarr_target(
            layout.window_store(experiment, split, alpha)
        )
        for alpha in config["alphas"]
    }
    inputs |= {
        f"keep_{value_label(beta)}": zarr_target(
            layout.keep_store(experiment, split, beta)
        )
        for beta in config["betas"]
    }
    inputs |= {
        f"fields_a{value_label(alpha)}_b{value_label(beta)}": zarr_target(
            layout.field_store(experiment, split, alpha, beta)
        )
        for alpha in config["dip_alphas"]
        for beta in config["betas"]
    }
    inputs |= {
        name: layout.head_file(experiment, split, f"{name}.parquet")
        for name in (
            "head_importance",
            "image_overview",
            "head_strength",
            "attention_strength",
            "attention_patterns",
        )
    }
    if config["semantics"]["enabled"] and split in config["semantics"]["splits"]:
        inputs |= {
            name: zarr_target(layout.semantics_file(experiment, split, f"{name}.zarr"))
            for name in ("keypoints", "semantics")
        }
    return inputs


def explorers():
    """The explorer page of every experiment, when the page and the head analyses are enabled."""
    if not (config["explorer"]["enabled"] and config["heads"]["enabled"]):
        return []
    return [
        f"{layout.explorer_folder(experiment)}/index.html"
        for experiment in config["experiments"]
    ]
