"""Reading a config: ``--config`` values as YAML, checks that JSON Schema cannot express, and the
canonical form that decides reruns.

The Snakefile validates the config against ``config/schema.yaml`` first
(types, ranges, unknown keys, defaults), then calls :func:`check_config`, so
every problem is reported, by key, before any job starts. What a valid config
means is :mod:`patchinteract.grid`.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

from patchinteract.grid import (
    branch_kinds,
    job_ranks,
    model_settings,
    retrain_init,
    retrain_methods,
    retrained_kinds,
    timm_model_name,
    weights_source,
)
from patchinteract.paths import value_label
from patchinteract.training.branch_kinds import KINDS, declared_in, load_kind_module


class ConfigError(ValueError):
    """The config names something impossible; the message lists each problem by key."""


def _weights_problems(key: str, value: str, model: str, allow_baseline: bool = False) -> list[str]:
    from patchinteract.models.registry import has_pretrained_weights

    source = weights_source(value)
    if source == "none" or (source == "baseline" and allow_baseline):
        return []
    if source == "baseline":
        return [f"{key}: 'baseline' is only for retrain.recipe.init"]
    if source == "timm":
        name = timm_model_name(value, model)
        if not has_pretrained_weights(name):
            return [f"{key}: timm has no pretrained weights for model '{name}'"]
        return []
    from patchinteract.models.huggingface import checkpoint_files, checkpoint_problem

    if checkpoint_files(value) or Path(value).is_dir():
        return [f"{key}: {problem}"] if (problem := checkpoint_problem(value)) else []
    if not Path(value).is_file():
        return [
            f"{key}: weights file '{value}' does not exist (use none, timm, a .pth/.safetensors path or a Hugging "
            "Face checkpoint folder)"
        ]
    return []


def config_problems(config: dict, models: ModelCheck | None = None) -> list[str]:
    """Every semantic problem of a schema-valid config, as 'key: what is wrong'; with ``models``, also each
    experiment's model built on the meta device."""
    problems = [problem for name, dataset in config["datasets"].items() for problem in dataset_problems(name, dataset)]
    for name in config["experiments"]:
        problems += experiment_problems(config, name, models)
    problems += grid_problems(config)
    problems += head_sample_problems(config["heads"])
    masking = config["semantics"]["masking"]
    if masking["fill"] == "dataset_mean" and masking["mode"] != "zero":
        problems.append(
            f"semantics.masking.fill: dataset_mean colours zeroed patches; mode {masking['mode']} removes them"
        )
    return problems + pretraining_problems(config["pretraining"], config["datasets"]) + rank_problems(config)


def pretraining_problems(pretraining: dict, datasets: dict) -> list[str]:
    """A decoder whose heads do not divide its width; starting weights (MAE pre-training starts from random
    weights)."""
    problems, decoder = [], pretraining["decoder"]
    if decoder["width"] % decoder["heads"]:
        problems.append(f"pretraining.decoder: {decoder['heads']} heads do not divide width {decoder['width']}")
    if pretraining["dataset"] is not None and pretraining["dataset"] not in datasets:
        problems.append(f"pretraining.dataset: '{pretraining['dataset']}' is not one of datasets {sorted(datasets)}")
    elif pretraining["dataset"] is not None and pretraining["order"] == "theta":
        problems.append("pretraining.order: theta needs θ of the experiment's own data set (pretraining.dataset: null)")
    if pretraining["recipe"].get("init", "none") != "none":
        problems.append(f"pretraining.recipe.init: '{pretraining['recipe']['init']}'; pre-training starts from none")
    return problems


# The kinds of job whose scripts run on several ranks (patchinteract.jobs).
RANKED_KINDS = ("train", "inference")


def rank_problems(config: dict) -> list[str]:
    """Several ranks: train and inference jobs only, one per GPU, and recipes whose batch splits equally
    over the train ranks."""
    problems = []
    for kind, settings in config["resources"].items():
        ranks, gpus = job_ranks(config, kind), settings["gpus"]
        if ranks > 1 and kind not in RANKED_KINDS:
            problems.append(
                f"resources.{kind}: {ranks} ranks on {gpus} GPUs, but only {' and '.join(RANKED_KINDS)} jobs"
                " run on several ranks"
            )
        elif gpus and ranks != gpus:
            problems.append(f"resources.{kind}.ranks: {ranks} ranks on {gpus} GPUs; one rank per GPU (leave it null)")
    ranks = job_ranks(config, "train")
    recipes = {
        f"experiments.{name}.train_baseline": e["train_baseline"]
        for name, e in config["experiments"].items()
        if "train_baseline" in e
    } | ({"retrain.recipe": config["retrain"]["recipe"]} if "recipe" in config["retrain"] else {})
    recipes["pretraining.recipe"] = config["pretraining"]["recipe"]
    for key, recipe in recipes.items():
        if recipe["batch_size"] % ranks:
            problems.append(f"{key}.batch_size: {recipe['batch_size']} does not split over the {ranks} train ranks")
    return problems


def dataset_problems(name: str, dataset: dict) -> list[str]:
    """What a data set of source imagefolder or url lacks."""
    key, problems = f"datasets.{name}", []
    if dataset["source"] == "imagefolder":
        if "path" not in dataset:
            problems.append(f"{key}.path: required for source imagefolder")
        elif not Path(dataset["path"]).is_dir():
            problems.append(f"{key}.path: dataset folder '{dataset['path']}' does not exist")
    if dataset["source"] == "url":
        problems += [f"{key}.{k}: required for source url" for k in ("url", "sha256") if k not in dataset]
    if "class_names" in dataset and not Path(dataset["class_names"]).is_file():
        problems.append(f"{key}.class_names: class names file '{dataset['class_names']}' does not exist")
    return problems


def experiment_problems(config: dict, name: str, models: ModelCheck | None = None) -> list[str]:
    """An experiment's data set, sizes, model (built on the meta device by ``models``) and every weights
    setting it reads."""
    from patchinteract.models.registry import is_known_model

    experiment, key, problems = config["experiments"][name], f"experiments.{name}", []
    if experiment["dataset"] not in config["datasets"]:
        problems.append(f"{key}.dataset: '{experiment['dataset']}' is not one of datasets {sorted(config['datasets'])}")
    sizes_fit = experiment["img_size"] % experiment["patch_size"] == 0
    if not sizes_fit:
        problems.append(
            f"{key}.img_size: {experiment['img_size']} is not divisible by patch_size {experiment['patch_size']}"
        )
    if not is_known_model(experiment["model"]):
        return problems + [f"{key}.model: '{experiment['model']}' is not a timm model name nor VisionTransformer"]
    if models is not None and sizes_fit and (problem := models.problem(model_settings(config, name))):
        problems.append(f"{key}.model: {problem}")
    problems += _weights_problems(f"{key}.pretrained", experiment["pretrained"], experiment["model"])
    if experiment["pretrained"] == "none":
        if "train_baseline" not in experiment:
            problems.append(f"{key}.train_baseline: required when pretrained is none")
        else:
            init = experiment["train_baseline"]["init"]
            problems += _weights_problems(f"{key}.train_baseline.init", init, experiment["model"])
    if retrain_methods(config, name) and "recipe" in config["retrain"]:
        init_key = f"{key}.retrain_init" if "retrain_init" in experiment else "retrain.recipe.init"
        problems += _weights_problems(init_key, retrain_init(config, name), experiment["model"], allow_baseline=True)
    return problems


def kind_problems(config: dict) -> list[str]:
    """Files of retrain.kind_modules that are missing, fail to run or declare no kind; methods and kind
    settings that name no kind."""
    problems = []
    for index, file in enumerate(config["retrain"]["kind_modules"]):
        key = f"retrain.kind_modules[{index}]"
        if not Path(file).is_file():
            problems.append(f"{key}: '{file}' is not a file")
            continue
        try:
            load_kind_module(file)
        except Exception as error:  # the user's code: any error is a problem of this key
            problems.append(f"{key}: '{file}' failed to run: {type(error).__name__}: {error}")
            continue
        if not any(declared_in(kind, [file]) for kind in KINDS.values()):
            problems.append(f"{key}: '{file}' declares no kind (a subclass of ViTBranch with its own name)")
    known = list(KINDS)
    method_lists = {"retrain.methods": config["retrain"]["methods"]}
    for name, experiment in config["experiments"].items():
        if "retrain_methods" in experiment:
            method_lists[f"experiments.{name}.retrain_methods"] = experiment["retrain_methods"]
    for key, methods in method_lists.items():
        problems += [
            f"{key}: '{m}' is not a kind of retraining branch (one of {known})" for m in methods if m not in known
        ]
    settings = config["retrain"]["kind_settings"]
    problems += [
        f"retrain.kind_settings.{name}: no kind of branch is named so" for name in settings if name not in known
    ]
    return problems


def grid_problems(config: dict) -> list[str]:
    """What the kinds of branch need (a recipe; each kind its own: masks of both splits, an α and β grid)
    and the labels."""
    problems = kind_problems(config)
    if problems:
        return problems
    kinds = {kind for name in config["experiments"] for kind in retrained_kinds(config, name)}
    if kinds and "recipe" not in config["retrain"]:
        problems.append("retrain.recipe: required when there are retraining methods")
    problems += [
        problem for kind in branch_kinds(config).values() if kind in kinds for problem in kind.problems(config)
    ]
    alphas = [*config["alphas"], *config["dip_alphas"], config["winft"]["alpha"]]
    problems += label_problems("alphas, dip_alphas, winft.alpha", alphas)
    problems += label_problems("betas, winft.beta", [*config["betas"], config["winft"]["beta"]])
    return problems + label_problems("figures.dip_betas", config["figures"]["dip_betas"])


# The image overview lays the analysed images out by t-SNE, which needs at least this many.
TSNE_MINIMUM = 4


def head_sample_problems(heads: dict) -> list[str]:
    """A head-analysis sample that cannot be laid out, or two sizes for one sample."""
    sample = heads["sample"]
    if sample["kind"] == "random":
        if heads["images"] != "all" and heads["images"] < TSNE_MINIMUM:
            return [
                f"heads.images: {heads['images']} images, but the image overview's t-SNE needs at least {TSNE_MINIMUM}"
            ]
        return []
    problems = []
    if heads["images"] != "all":
        problems.append(
            f"heads.images: {heads['images']} is the size of a random sample; with heads.sample.kind "
            "best_worst the sample is classes x per_class (leave heads.images at all)"
        )
    if sample["per_class"] != "all" and sample["classes"] * sample["per_class"] < TSNE_MINIMUM:
        problems.append(
            f"heads.sample: {sample['classes']} x {sample['per_class']} images, but the image "
            f"overview's t-SNE needs at least {TSNE_MINIMUM}"
        )
    return problems


class ModelCheck:
    """:func:`patchinteract.models.families.model_problem` of each experiment's model, remembered in ``cache``
    (a JSON file) by settings and timm and torch versions: building needs timm, whose import (~3 s)
    would otherwise be paid at every ``snakemake`` start."""

    def __init__(self, cache: Path | str | None = None):
        self.cache = Path(cache) if cache else None

    def problem(self, settings: dict) -> str | None:
        from importlib.metadata import version

        key = json.dumps([settings, version("timm"), version("torch")], sort_keys=True)
        known = self.read()
        if key not in known:
            from patchinteract.models.families import model_problem

            known[key] = model_problem(settings)
            self.write(known)
        return known[key]

    def read(self) -> dict:
        try:
            return json.loads(self.cache.read_text()) if self.cache else {}
        except (OSError, ValueError):
            return {}

    def write(self, known: dict) -> None:
        if self.cache:
            self.cache.parent.mkdir(parents=True, exist_ok=True)
            partial = self.cache.with_name(f"{self.cache.name}.{os.getpid()}")
            partial.write_text(json.dumps(known, indent=1, sort_keys=True))
            partial.replace(self.cache)


def check_config(config: dict, models: ModelCheck | None = None) -> None:
    """Raise ConfigError listing every problem of ``config`` (after schema validation)."""
    problems = config_problems(config, models)
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))


def label_problems(keys: str, values: list[float]) -> list[str]:
    """Values whose file-name label is not theirs alone: two values sharing one label would share
    one mask store, and a label that reads back as another value would compute the masks for that."""
    by_label: dict[str, set[float]] = {}
    for value in values:
        by_label.setdefault(value_label(value), set()).add(value)
    problems = []
    for label, same in by_label.items():
        if len(same) > 1:
            listed = " and ".join(map(repr, sorted(same)))
            problems.append(
                f"{keys}: {listed} share the label '{label}' in file names; use values that differ "
                "within 6 significant digits"
            )
        elif float(label) not in same:
            problems.append(
                f"{keys}: {next(iter(same))!r} is written '{label}' in file names, which reads back "
                "as another value; use at most 6 significant digits"
            )
    return problems


def canonical(value):
    """``value`` with every dict's keys sorted, at every depth (lists and tuples keep their order).

    Snakemake decides whether a job's params changed by comparing their ``repr``, and a dict's repr
    follows its insertion order: every rule's params pass through here (the Snakefile's last lines),
    so that a reordered config file, one written by a script (``yaml.safe_dump`` sorts keys), a JSON
    config (read as OrderedDict) or a default spelled out plans the same jobs as the original.
    """
    if isinstance(value, dict):
        return {key: canonical(value[key]) for key in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return type(value)(canonical(item) for item in value)
    return value


def command_line_values(overrides):
    """``--config`` overrides with the meaning the same YAML has in a config file.

    Snakemake parses a top-level ``--config`` value as a number or bool, but hands nested values over
    as strings (``betas=[0.1,0.2]`` arrives as ``['0.1', '0.2']``): each such string is read as a YAML
    scalar (``'0.1'`` → 0.1, ``'true'`` → True, ``'null'`` → None, ``'cuda'`` stays a string).
    """
    import yaml

    if isinstance(overrides, dict):
        return {key: command_line_values(value) for key, value in overrides.items()}
    if isinstance(overrides, list):
        return [command_line_values(item) for item in overrides]
    if isinstance(overrides, str):
        try:
            value = yaml.safe_load(overrides)
        except yaml.YAMLError:
            return overrides
        # a string that reads as a list or mapping was quoted on the command line: it stays a string
        return overrides if isinstance(value, (dict, list)) else value
    return overrides


def canonical_params(params) -> None:
    """Make every value of a rule's params canonical (:func:`canonical`), params functions' results too.

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


def rewrite_records(metadata: str | Path, *changes) -> int:
    """Apply each ``change(record) -> bool`` (True: it changed the record) to every one of Snakemake's
    records in ``metadata`` (``.snakemake/metadata``) and write back those changed, each atomically, in
    one pass. Returns their number."""
    import os

    rewritten = 0
    # a record's name is its output path in base64, split into folders ('@…') where it is long
    for path in sorted(p for p in Path(metadata).rglob("*") if p.is_file() and not p.name.startswith(".")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # being written by a running job, or not a record
        if not isinstance(record, dict) or not any([change(record) for change in changes]):  # every change runs
            continue
        partial = path.with_name(f".{path.name}.canonical")
        partial.write_text(json.dumps(record))
        os.replace(partial, path)  # atomic: a record is never half written
        rewritten += 1
    return rewritten


# Written into .snakemake/metadata once its records were re-spelled: the records written after it are canonical
# (today's rules write them so), so later starts check this one file instead of reading every record.
RESPELLED_MARKER = ".respelled-v2"  # v2: a rule's code re-indented (v1: params, notebook inputs)


def rewrite_records_once(metadata: str | Path, *changes) -> int | None:
    """:func:`rewrite_records` the first time for a folder of records, then never again: the pass leaves
    :data:`RESPELLED_MARKER` in the folder, and a later call only finds it (None). A folder that does not
    exist yet holds nothing to re-spell (None, no marker: Snakemake writes its records canonical)."""
    folder = Path(metadata)
    marker = folder / RESPELLED_MARKER
    if not folder.is_dir() or marker.exists():
        return None
    rewritten = rewrite_records(folder, *changes)
    for older in folder.glob(".respelled-v*"):  # an earlier pass's marker: this one re-spells what it did too
        older.unlink()
    marker.write_text(
        f"{rewritten} records re-spelled: params with sorted keys, notebook inputs relative, code re-indented\n"
    )
    return rewritten


def canonical_params_change(record: dict) -> bool:
    """Re-spell a record's params in canonical form.

    Snakemake (its default, file-based persistence) stores each output's params as the ``repr`` of
    every value and reruns a job whose reprs changed. Records written before params passed through
    :func:`canonical` hold dicts in config-file order; they are re-spelled here (same values,
    keys sorted), so that the first run of today's code reruns nothing it would not rerun anyway. A
    value that is not a Python literal is left as it is.
    """
    import ast

    def respelled(text: str) -> str:
        try:
            return repr(canonical(ast.literal_eval(text)))
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return text

    params = record.get("params")
    if not isinstance(params, list):
        return False
    record["params"] = sorted(respelled(p) if isinstance(p, str) else p for p in params)
    return record["params"] != params


def code_indentation_change(rules):
    """A change that re-spells a record's code as its rule's code today (``rules``: Snakemake's) where the
    two differ in indentation only. Snakemake keeps a script rule's script line as its code, indentation
    included, and reruns a job whose code changed: the retraining rules, made in a loop over the kinds of
    branch, are indented one level deeper than the rules that wrote their records before."""

    # what Snakemake records as a rule's code: its shell command, or its source (a script rule's script line)
    codes = {rule.name: rule.shellcmd if rule.shellcmd is not None else rule.run_func_src for rule in rules}

    def stripped(code: str) -> list[str]:
        return [line.strip() for line in code.splitlines()]

    def change(record: dict) -> bool:
        code, today = record.get("code"), codes.get(record.get("rule"))
        if not isinstance(code, str) or today is None or code == today or stripped(code) != stripped(today):
            return False
        record["code"] = today
        return True

    return change


def relative_input_change(folder: str | Path):
    """A change that re-spells a record's absolute input paths inside ``folder`` (the figure notebooks')
    relative to the working directory, as the rules now name them: Snakemake reruns a job whose set of
    input paths changed, and an absolute path changes whenever the project moves."""
    import os

    folder = os.path.abspath(folder)

    def relative(name):
        inside = isinstance(name, str) and os.path.isabs(name) and os.path.commonpath([name, folder]) == folder
        return os.path.relpath(name) if inside else name

    def change(record: dict) -> bool:
        inputs = record.get("input")
        if not isinstance(inputs, list) or all(relative(name) == name for name in inputs):
            return False
        record["input"] = [relative(name) for name in inputs]
        if isinstance(record.get("input_checksums"), dict):
            record["input_checksums"] = {relative(k): v for k, v in record["input_checksums"].items()}
        return True

    return change
