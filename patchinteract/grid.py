"""What a validated config means: each experiment's branches and seeds, the α and β that have mask
stores, the weights each training starts from, the settings each stage reads, and the hashes that key
results. The one home of config meaning: rules, checks and scripts ask here. The defaults of config keys
live only in ``config/schema.yaml`` (the Snakefile validates before anything reads the config): a job
passes every setting it reads, and a library function taking a setting has no default for it where a
schema default exists (:mod:`patchinteract.schema` hands those to code outside a config), except the
model classes' paper choices (``MaskedViT``, ``WindowFreeViT``) and the statistics' level and resamples
for tests, which no job relies on.
"""

from __future__ import annotations

import hashlib
import json

from patchinteract import paths
from patchinteract.paths import value_label
from patchinteract.training.branch_kinds import KINDS, ViTBranch, declared_in, load_kind_module

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


def init_setting(config: dict, experiment: str, purpose: str) -> str:
    """The init setting of an experiment's baseline training (purpose baseline) or retraining (retrain)."""
    if purpose == "baseline":
        return config["experiments"][experiment]["train_baseline"]["init"]
    return retrain_init(config, experiment)


def experiments_with_weights(config: dict, source: str) -> list[str]:
    """Experiments whose baseline comes from ``source`` (none: trained, timm: the hub, path: a file)."""
    return [name for name, e in config["experiments"].items() if weights_source(e["pretrained"]) == source]


# --------------------------------------------------------------------------- data sets and models


def job_ranks(config: dict, kind: str) -> int:
    """The processes a job of a kind runs on: resources.<kind>.ranks, by default one per GPU (at least one)."""
    settings = config["resources"][kind]
    return settings.get("ranks") or max(1, settings["gpus"])


def dataset_of(config: dict, experiment: str) -> str:
    return config["experiments"][experiment]["dataset"]


# Keys of a data set that only say how its classes are shown: no image, label or split depends on them.
DISPLAY_ONLY_DATASET_KEYS = ("class_names",)


def dataset_settings(config: dict, name: str) -> dict:
    """What a data set's images, labels and splits depend on: its settings less the display-only keys."""
    return {key: value for key, value in config["datasets"][name].items() if key not in DISPLAY_ONLY_DATASET_KEYS}


def class_names_file(config: dict, experiment: str) -> list[str]:
    """The experiment's data set's readable class names file (datasets.<name>.class_names), if it has one: an
    input of the jobs that show class names, so that editing it redraws those and nothing else."""
    names = config["datasets"][dataset_of(config, experiment)].get("class_names")
    return [names] if names else []


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


def branch_kinds(config: dict) -> dict[str, type[ViTBranch]]:
    """Every kind of retraining branch by method name: the built-in ones, then those that the files of
    retrain.kind_modules declare (run once per process)."""
    for module in config["retrain"]["kind_modules"]:
        load_kind_module(module)
    return dict(KINDS)


def retrained_kinds(config: dict, experiment: str) -> list[type[ViTBranch]]:
    """The kinds an experiment retrains, in declaration order."""
    methods = retrain_methods(config, experiment)
    return [kind for name, kind in branch_kinds(config).items() if name in methods]


def kind_module(config: dict, kind: type[ViTBranch]) -> str | None:
    """The retrain.kind_modules file that declares a kind (None: a built-in kind)."""
    return declared_in(kind, config["retrain"]["kind_modules"])


def retrain_branches(config: dict, experiment: str) -> list[str]:
    """Branch names of an experiment's grid: vit, awd_a<α>, awd_dip_a<α>_b<β>, winft, and those of kinds
    from retrain.kind_modules."""
    return [kind.branch(point) for kind in retrained_kinds(config, experiment) for point in kind.points(config)]


def kind_of_branch(config: dict, branch: str) -> type[ViTBranch]:
    """The kind whose names include ``branch``."""
    for kind in branch_kinds(config).values():
        if kind.point_of(branch) is not None:
            return kind
    raise ValueError(f"'{branch}' is not the name of a branch of any kind ({list(branch_kinds(config))})")


def branch_point(config: dict, kind: type[ViTBranch], wildcards) -> dict[str, float]:
    """A branch's grid values as the config spells them, from their labels in a job's wildcards: values
    cross from the config to the job, never read back from labels (config checks: one value per label)."""
    labels = {axis: wildcards[axis] for axis in kind.axes()}
    for point in kind.points(config):
        if all(value_label(point[axis]) == label for axis, label in labels.items()):
            return point
    raise KeyError(f"no {kind.name} branch of the config has the values {labels}")


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
    return fingerprint(settings, dataset_settings(config, settings["dataset"]), config["seed"])


# Keys of the retrain section that say which branches exist and where kinds are declared: not part of any
# branch's hash (a kind's own settings are, through the kind: ViTBranch.own_settings).
BRANCH_LIST_KEYS = ("methods", "kind_modules", "kind_settings")


def retrain_fingerprint(config: dict, experiment: str, branch: str, seed: int) -> str:
    """Hash of everything that determines one seed of a retrained branch: the retrain section, the kind's
    own settings, the branch and the seed. Adding another method, kind or seed, or changing one kind's own
    settings (WinFT's section), leaves the other runs' hashes alone."""
    recipe = {k: v for k, v in config["retrain"].items() if k not in BRANCH_LIST_KEYS}
    own = kind_of_branch(config, branch).own_settings(config)
    init = retrain_init(config, experiment)
    return fingerprint(experiment_fingerprint(config, experiment), recipe, init, own, branch, seed)


# Keys of the pretraining section that only the guided schedule reads: changing them reruns the guided runs only.
GUIDED_ONLY_KEYS = ("betas", "rounds_per_step", "order")


def pretraining_settings(config: dict, schedule: str) -> dict:
    """What determines a pre-training run of a mask schedule: the pretraining section less what says which
    runs exist and the restoration's settings, and for the random schedule less the guided-only keys."""
    skipped = {"enabled", "schedules", "restoration"} | (set(GUIDED_ONLY_KEYS) if schedule == "random" else set())
    return {key: value for key, value in config["pretraining"].items() if key not in skipped}


def pretraining_fingerprint(config: dict, experiment: str, schedule: str, seed: int) -> str:
    """Hash of everything that determines one pre-training run."""
    settings, dataset = pretraining_settings(config, schedule), pretraining_dataset(config, experiment)
    return fingerprint(
        experiment_fingerprint(config, experiment), settings, dataset_settings(config, dataset), schedule, seed
    )


def pretraining_dataset(config: dict, experiment: str) -> str:
    """The data set an experiment's MAEs pre-train on: pretraining.dataset, or the experiment's own."""
    return config["pretraining"]["dataset"] or dataset_of(config, experiment)


# --------------------------------------------------------------------------- what each stage reads


def training_init_input(config: dict, experiment: str, purpose: str) -> dict:
    """The starting weights a training job reads (purpose baseline | retrain): none, the hub's (fetched by
    a local rule), the baseline, or a file."""
    init = init_setting(config, experiment, purpose)
    source = weights_source(init)
    if source == "none":
        return {}
    if source == "timm":
        return {"init": paths.init_weights(experiment, purpose)}
    if source == "baseline":
        return {"init": paths.baseline_weights(experiment)}
    return {"init": init}


def init_model_name(config: dict, experiment: str, purpose: str) -> str:
    """The timm model whose hub weights start an experiment's baseline training or retraining."""
    return timm_model_name(init_setting(config, experiment, purpose), config["experiments"][experiment]["model"])


def dataset_images_input(config: dict, dataset: str) -> dict:
    """The images folder a manifest needs, unless the data set is a local ImageFolder."""
    if config["datasets"][dataset]["source"] == "imagefolder":
        return {}
    return {"images": paths.dataset_images(dataset)}


def branch_stores(config: dict, experiment: str, kind: type[ViTBranch], point: dict) -> dict[str, dict[str, str]]:
    """The mask stores a retraining branch reads, by split and kind of store (folders)."""
    values = kind.mask_values(config, point)
    return {split: kind.stores(experiment, split, values["alpha"], values["beta"]) for split in paths.SPLITS}


def retraining_inputs(config: dict, experiment: str, kind: type[ViTBranch], point: dict) -> dict:
    """A retraining job's input files: the manifest, the initial weights, the branch's mask stores, and
    the file that declares its kind (unless built in)."""
    stores = branch_stores(config, experiment, kind, point)
    targets = [paths.zarr_target(store) for kinds in stores.values() for store in kinds.values()]
    manifest = paths.manifest(dataset_of(config, experiment))
    module = kind_module(config, kind)
    declared = {"kind_module": module} if module else {}
    return {"manifest": manifest, "stores": targets} | training_init_input(config, experiment, "retrain") | declared


def retraining_outputs(kind: type[ViTBranch]) -> dict[str, str]:
    """A kind's retraining rule's outputs (patterns over experiment, seed and the kind's values): metrics,
    per-image predictions, weights, and the files the kind adds (Zarr stores by their root metadata)."""
    files = {"metrics": "metrics.json", "predictions": paths.PREDICTIONS, "weights": "model.safetensors"}
    outputs = {key: seed_file_pattern(kind, name) for key, name in (files | kind.outputs).items()}
    return {key: paths.zarr_target(path) if path.endswith(".zarr") else path for key, path in outputs.items()}


def seed_file_pattern(kind: type[ViTBranch], name: str) -> str:
    """A file of one seed of a kind's branches, as a pattern over experiment, seed and the kind's values."""
    return paths.branch_file("{experiment}", kind.pattern, "{seed}", name)


def retraining_params(config: dict, kind: type[ViTBranch]) -> dict:
    """The params of a kind's retraining rule that follow from its declaration: its method, the branch,
    the hash of what it reads, its α and β, its settings, checkpoint and mask stores, and for a kind
    declared in retrain.kind_modules the file the job imports it from. Functions take the job's wildcards."""

    def point(wildcards):
        return branch_point(config, kind, wildcards)

    def branch(wildcards):
        return kind.branch(point(wildcards))

    params = {
        "method": kind.name,
        "branch": branch,
        "config_hash": lambda wildcards: retrain_fingerprint(
            config, wildcards.experiment, branch(wildcards), int(wildcards.seed)
        ),
        "alpha": lambda wildcards: kind.mask_values(config, point(wildcards))["alpha"],
        "beta": lambda wildcards: kind.mask_values(config, point(wildcards))["beta"],
        "settings": kind.settings(config),
        "checkpoint": seed_file_pattern(kind, "checkpoint.pt"),
        # Derived from the inputs (it takes `input`): the input trigger covers the stores.
        "stores": lambda wildcards, input: branch_stores(config, wildcards.experiment, kind, point(wildcards)),
    }
    if module := kind_module(config, kind):
        params["kind_module"] = module
    return params


def figure_attention_store(config: dict, experiment: str) -> str:
    """The val attention that Fig. 3 draws: the whole store, or with attention.store none the figure images'."""
    if config["attention"]["store"] == "zarr":
        return paths.zarr_target(paths.attention_store(experiment, "val"))
    return paths.zarr_target(paths.figure_attention_store(experiment, "val"))


def figure_field_store(config: dict, experiment: str) -> str:
    """The val responsive fields that Fig. 5, 7 and 9 show (:func:`figure_field_values`)."""
    alpha, beta = figure_field_values(config)
    return paths.zarr_target(paths.field_store(experiment, "val", alpha, beta))


def val_keep_stores(experiment: str, betas: list[float]) -> list[str]:
    return [paths.zarr_target(paths.keep_store(experiment, "val", beta)) for beta in betas]


def mean_colour_input(config: dict, experiment: str) -> dict:
    """The data set's mean colour, where zeroed patches take it (semantics.masking.fill: dataset_mean)."""
    if config["semantics"]["masking"]["fill"] != "dataset_mean":
        return {}
    return {"mean_colour": paths.mean_colour(dataset_of(config, experiment))}


def pretraining_inputs(config: dict, experiment: str, schedule: str) -> dict:
    """What a pre-training run reads: the manifest, and for the guided schedule the train split's keypoint
    store (and its semantics store with ``order: theta``)."""
    inputs = {"manifest": paths.manifest(pretraining_dataset(config, experiment))}
    if schedule == "guided":
        inputs["keypoints"] = pretraining_keypoints(config, experiment, "train")
        if config["pretraining"]["order"] == "theta":  # the experiment's own data set (config check)
            inputs["semantics"] = paths.zarr_target(paths.semantics_file(experiment, "train", "semantics.zarr"))
    return inputs


def pretraining_keypoints(config: dict, experiment: str, split: str) -> str:
    """The keypoint store of a split of the pre-training data set: the semantic analyses' when it is the
    experiment's own data set, else one beside the pre-training runs."""
    if pretraining_dataset(config, experiment) == dataset_of(config, experiment):
        return paths.zarr_target(paths.semantics_file(experiment, split, "keypoints.zarr"))
    return paths.zarr_target(paths.restoration_file(experiment, f"keypoints_{split}.zarr"))


def pretraining_runs(config: dict) -> list[tuple[str, int]]:
    """(schedule, seed) of every pre-training run of an experiment."""
    return [(schedule, seed) for schedule in config["pretraining"]["schedules"] for seed in config["seeds"]]


def pretraining_run_files(config: dict, experiment: str, name: str) -> list[str]:
    """One file of every pre-training run of an experiment, in :func:`pretraining_runs`' order."""
    return [paths.pretraining_file(experiment, schedule, seed, name) for schedule, seed in pretraining_runs(config)]


def explorer_inputs(config: dict, experiment: str) -> dict:
    """Every store and table the explorer page of an experiment reads (split: heads.split)."""
    split, target = config["heads"]["split"], paths.zarr_target
    attention = paths.attention_store if config["attention"]["store"] == "zarr" else paths.explorer_attention_store
    inputs = {
        "manifest": paths.manifest(dataset_of(config, experiment)),
        "attention": target(attention(experiment, split)),
        "interaction": target(paths.interaction_store(experiment, split)),
    }
    inputs |= {f"window_{value_label(a)}": target(paths.window_store(experiment, split, a)) for a in config["alphas"]}
    inputs |= {f"keep_{value_label(b)}": target(paths.keep_store(experiment, split, b)) for b in config["betas"]}
    inputs |= {
        f"fields_a{value_label(a)}_b{value_label(b)}": target(paths.field_store(experiment, split, a, b))
        for a in config["dip_alphas"]
        for b in config["betas"]
    }
    tables = ("head_importance", "image_overview", "head_strength", "attention_strength", "attention_patterns")
    inputs |= {name: paths.head_file(experiment, split, f"{name}.parquet") for name in tables}
    inputs["head_summary"] = paths.table_file(f"head_summary_{experiment}_{split}", ".parquet")
    for names in class_names_file(config, experiment):
        inputs["class_names"] = names
    if config["semantics"]["enabled"] and split in config["semantics"]["splits"]:
        inputs |= {
            name: target(paths.semantics_file(experiment, split, f"{name}.zarr")) for name in ("keypoints", "semantics")
        }
    return inputs


# --------------------------------------------------------------------------- what the workflow makes


def baseline_files(config: dict, name: str = "metrics.json") -> list[str]:
    """The baseline's metrics.json (or, with name, another of its files) of every experiment."""
    return [paths.model_file(experiment, name) for experiment in config["experiments"]]


def branch_files(config: dict, name: str = "metrics.json") -> list[str]:
    """metrics.json (or, with name, another file) of every seed of every retrained branch."""
    return [
        paths.branch_file(experiment, branch, seed, name)
        for experiment in config["experiments"]
        for branch in retrain_branches(config, experiment)
        for seed in config["seeds"]
    ]


def interaction_stores(config: dict) -> list[str]:
    return [
        paths.zarr_target(paths.interaction_store(experiment, split))
        for experiment in config["experiments"]
        for split in config["attention"]["splits"]
    ]


def field_stores(config: dict) -> list[str]:
    """Responsive fields of every (dip_alpha, beta) pair, for the figures."""
    return [
        paths.zarr_target(paths.field_store(experiment, split, alpha, beta))
        for experiment in config["experiments"]
        for split in config["attention"]["splits"]
        for alpha in config["dip_alphas"]
        for beta in config["betas"]
    ]


def figures(config: dict) -> list[str]:
    """The figures of Ma et al.'s part of the configured grid, each figure rule named by its executed notebook
    (the rules list the figures each notebook draws)."""
    experiments = config["experiments"]
    targets = [paths.executed_notebook("accuracy_vs_interactions")]
    with_val = "val" in config["attention"]["splits"]
    if config["betas"] and config["dip_alphas"] and with_val:
        notebooks = ("patch_interactions", "image_panels")
        targets += [paths.executed_notebook(name, experiment) for experiment in experiments for name in notebooks]
    if with_val:
        targets += [paths.executed_notebook("attention_rows", experiment) for experiment in experiments]
    if config["winft"]["figure_images"] > 0:
        targets += [
            paths.executed_notebook("winft_windows", experiment)
            for experiment in experiments
            if "winft" in retrain_methods(config, experiment)
        ]
    return targets


def head_analyses(config: dict) -> list[str]:
    """Outputs of the head analyses (Li et al.) of every experiment, unless heads.enabled is false."""
    if not config["heads"]["enabled"]:
        return []
    split = config["heads"]["split"]
    return [
        target
        for experiment in config["experiments"]
        for target in (
            paths.table_file(f"head_summary_{experiment}_{split}", ".parquet"),
            paths.head_file(experiment, split, "image_overview.parquet"),
            paths.head_file(experiment, split, "attention_strength.parquet"),
            paths.executed_notebook(f"head_analyses_{split}", experiment),  # its figures
        )
    ]


def semantic_analyses(config: dict) -> list[str]:
    """Outputs of the semantic analyses (Wu et al.) of every experiment, unless semantics.enabled is false."""
    if not config["semantics"]["enabled"]:
        return []
    targets = []
    for experiment in config["experiments"]:
        targets += [
            paths.table_file(f"semantics_{table}_{experiment}_{split}", ".parquet")
            for split in config["semantics"]["splits"]
            for table in ("summary", "layers")
        ]
        targets += [
            paths.semantics_file(experiment, "val", "theta_masking.parquet"),
            paths.table_file(f"theta_masking_{experiment}", ".parquet"),
            paths.table_file(f"theta_masking_tests_{experiment}", ".parquet"),
            paths.table_file(f"semantics_stages_{experiment}_val", ".parquet"),
            paths.executed_notebook("semantic_analyses", experiment),  # its figures
        ]
    return targets


def pretraining_analyses(config: dict) -> list[str]:
    """Outputs of the MAE pre-training (Wu et al. Sec. 5.2) and restoration (Sec. 2) of every experiment,
    unless pretraining.enabled is false."""
    if not config["pretraining"]["enabled"]:
        return []
    return [
        target
        for experiment in config["experiments"]
        for target in (
            paths.table_file(f"pretraining_{experiment}", ".parquet"),
            paths.restoration_file(experiment, "restoration.parquet"),
            paths.executed_notebook("pretraining", experiment),  # its figures
        )
    ]


def explorers(config: dict) -> list[str]:
    """The explorer page of every experiment, when the page and the head analyses are enabled."""
    if not (config["explorer"]["enabled"] and config["heads"]["enabled"]):
        return []
    return [f"{paths.explorer_folder(experiment)}/index.html" for experiment in config["experiments"]]
