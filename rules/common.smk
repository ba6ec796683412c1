# Config checks, wildcard constraints and input functions shared by the rules.
import patchinteract  # torchvision compatibility shim before anything imports timm
from patchinteract.config import check_config, experiments_with, weights_source

check_config(config)

RESULTS = "results"
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
