# Config checks, wildcard constraints and input functions shared by the rules.
import sys

# The library lives beside the Snakefile: importable here and in every job, with or
# without `pip install -e .` (e.g. inside the conda env of --software-deployment-method conda).
sys.path.insert(0, workflow.basedir)

import patchinteract  # torchvision compatibility shim before anything imports timm
from patchinteract.config import check_config, share_library_with_jobs, weights_source

share_library_with_jobs(workflow.basedir)

check_config(config)

RESULTS = "results"
# Software of every rule, for --software-deployment-method conda (path relative to rules/).
CONDA_ENV = "../environment.yml"
LOGS = f"{RESULTS}/logs"


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


def resources_of(kind):
    """Scheduler resources of a kind of job (config key resources.<kind>)."""
    settings = config["resources"][kind]
    return {
        "mem_mb": settings["mem_mb"],
        "runtime": settings["runtime"],
        "gpu": settings["gpus"],
    }


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
        f"{RESULTS}/{{experiment}}/interaction/{{split}}.zarr",
        experiment=config["experiments"],
        split=config["attention"]["splits"],
    )


def dataset_images(wildcards):
    """The images folder a manifest needs, unless the dataset is a local ImageFolder."""
    if config["datasets"][wildcards.dataset]["source"] == "imagefolder":
        return {}
    return {"images": f"{RESULTS}/datasets/{wildcards.dataset}/images"}


def init_weights(wildcards):
    """Starting weights of baseline training: none, the hub's (fetched locally), or a file."""
    init = config["experiments"][wildcards.experiment]["train_baseline"]["init"]
    source = weights_source(init)
    if source == "none":
        return {}
    if source == "timm":
        return {"init": f"{RESULTS}/{wildcards.experiment}/model/init.safetensors"}
    return {"init": init}
