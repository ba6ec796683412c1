# What the rule files share. The config check, wildcard constraints, resources, how a job runs, and
# the params and input functions several of them use. Paths come from patchinteract/paths.py, branch
# names from their kinds (patchinteract/training/branch_kinds.py); what the config means, including what each stage reads, from
# patchinteract/grid.py, which the rules call in one-line lambdas (snakemake --lint wants functions
# apart from rules). Settings reach jobs only through params (every value that can change a result)
# and one Execution value (how the job runs).
import os
import re
from pathlib import Path

from patchinteract import grid, paths
from patchinteract.config import ModelCheck, check_config
from patchinteract.plan import training_bill
from patchinteract.paths import LOGS, log_file, value_label, zarr_target
from patchinteract.stores.chunked import store_folder
from patchinteract.runtime import Execution, share_library_with_jobs
from patchinteract.training.branch_kinds import WindowFreeBranch
from patchinteract.warm_start import start_server, warm_starts

share_library_with_jobs(workflow.basedir)

# Each experiment's model is built on the meta device where the plan is made, not again in every job's
# own Snakemake (one per Slurm job); results are remembered by settings and versions.
check_config(
    config,
    (
        ModelCheck(".snakemake/patchinteract/model_checks.json")
        if workflow.is_main_process
        else None
    ),
)

# The bill, before any job: what each training kind will process, and the analyses left out.
if workflow.is_main_process:
    from snakemake.logging import logger

    logger.info("Training in this plan (runs × epochs × train images = image-steps):")
    for line in training_bill(config):
        logger.info(f"    {line}")


# Jobs of a local run continue in forks of one interpreter that has imported torch and timm (config warm_start).
# A run of one or two jobs starts them cold: the server's own imports would cost more than they save.
onstart:
    if (
        workflow.is_main_process
        and workflow.local_exec
        and not workflow.touch
        and len(workflow.dag) >= 3
        and warm_starts(config["warm_start"], config["device"])
    ):
        start_server(
            config["warm_start"],
            config["device"],
            ".snakemake/patchinteract/warm_start.log",
        )


# Software of every rule, for --software-deployment-method conda (path relative to rules/).
CONDA_ENV = "../environment.yml"

# Jobs on the way to retraining (attention, U, masks, retraining) start before the analyses and
# figures when both are ready, so that the long training jobs begin as early as they can (docs/scaling.md).
RETRAINING_PATH = 1


# How every interval and test is computed (tables.confidence, tables.bootstrap_resamples, the seed):
# the params of each job that writes one.
UNCERTAINTY = dict(
    confidence=config["tables"]["confidence"],
    resamples=config["tables"]["bootstrap_resamples"],
    seed=config["seed"],
)


def figure_outputs(notebook, names, category, experiment="{experiment}", suffix=""):
    """A figure rule's outputs from its notebook and the one list of its figures' names: each figure's PNG
    (<name><suffix>.png, in the HTML report with the caption report/<name>.rst), every PDF, and the
    executed notebook (with experiment None: the figures over all experiments)."""

    # a function: Snakemake's parser reads `report` at the start of a line as its keyword
    def in_report(name):
        png = paths.figure_file(f"{name}{suffix}", ".png", experiment)
        subcategory = experiment or "all experiments"
        return report(
            png,
            caption=f"../report/{name}.rst",
            category=category,
            subcategory=subcategory,
        )

    return {
        "pngs": [in_report(name) for name in names],
        "pdfs": [
            paths.figure_file(f"{name}{suffix}", ".pdf", experiment) for name in names
        ],
        "notebook": paths.executed_notebook(f"{notebook}{suffix}", experiment),
    }


def notebook_path(name):
    """The figure notebook ``notebooks/<name>.ipynb``, relative to the working directory: a finished project
    moved or copied to another folder plans no job again (an absolute input path would differ).
    """
    return os.path.relpath(os.path.join(workflow.basedir, "notebooks", f"{name}.ipynb"))


def one_of(names):
    """Regex matching exactly the given names (never matches when the list is empty)."""
    return "|".join(map(re.escape, names)) if names else "(?!x)x"


wildcard_constraints:
    experiment=one_of(config["experiments"]),
    dataset=one_of(config["datasets"]),
    split="train|val",
    alpha=one_of([value_label(a) for a in grid.mask_alphas(config)]),
    beta=one_of([value_label(b) for b in grid.mask_betas(config)]),
    seed=one_of([str(seed) for seed in config["seeds"]]),
    schedule=one_of(config["pretraining"]["schedules"]),


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


def execution(batch_size=1, dask=None, kind=None):
    """How a job runs (device, loader workers, batch size, Dask, the ranks of a kind of job): not a
    rerun trigger."""
    return Execution(
        config["device"],
        config["data"]["loader_workers"],
        batch_size,
        dask or {},
        config["data"]["cache_images"],
        grid.job_ranks(config, kind) if kind else 1,
    )


# ----------------------------------------------------------------------- params functions


def model_of(wildcards):
    return grid.model_settings(config, wildcards.experiment)


def record_of(wildcards):
    return grid.experiment_record(config, wildcards.experiment)


def mask_alpha(wildcards):
    """The job's α as the config spells it (its {alpha} wildcard is only the value's label)."""
    return grid.value_with_label(grid.mask_alphas(config), wildcards.alpha)


def mask_beta(wildcards):
    """The job's β as the config spells it (its {beta} wildcard is only the value's label)."""
    return grid.value_with_label(grid.mask_betas(config), wildcards.beta)


# ----------------------------------------------------------------------- input functions


def manifest_of(wildcards):
    return paths.manifest(grid.dataset_of(config, wildcards.experiment))


def class_names_file_of(wildcards):
    return grid.class_names_file(config, wildcards.experiment)


def one_or_none(files):
    """The file of a named input of at most one (a notebook parameter)."""
    return str(files[0]) if files else None


def head_file(name):
    """An output of the head analyses, as a pattern over {experiment} and {split}."""
    return paths.head_file("{experiment}", "{split}", name)
