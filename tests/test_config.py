"""Config validation: schema, semantic checks by key, and the real-scale configs' DAGs."""

import copy
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import (
    REPO,
    TINY_CONFIG,
    planned_jobs,
    planned_wildcards,
    repository_copy,
    run_from_root,
    run_snakemake,
    snakemake_from_root,
)
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from patchinteract.config import ConfigError, check_config
from patchinteract.grid import retrain_methods

SCHEMA = str(REPO / "config" / "schema.yaml")


def validated(config):
    config = copy.deepcopy(config)
    validate(config, SCHEMA)
    check_config(config)
    return config


def test_default_config_is_valid():
    config = validated(yaml.safe_load((REPO / "config" / "config.yaml").read_text()))
    assert config["attention"]["store"] == "zarr"  # schema defaults filled in
    assert config["experiments"]["digits_p4"]["train_baseline"]["accumulation_steps"] == 1


def with_change(path, value):
    config = copy.deepcopy(TINY_CONFIG)
    *parents, last = path
    node = config
    for key in parents:
        node = node[key]
    node[last] = value
    return config


@pytest.mark.parametrize(
    "path, value, message",
    [
        (("experiments", "tiny", "patch_sise"), 4, "'patch_sise' was unexpected"),
        (("attention", "store"), "zarrr", "'zarrr' is not one of"),
        (("alphas",), [0.1, 0.0], "0.0 is less than or equal to the minimum of 0"),
        (("alphas",), [1.5], "1.5 is greater than the maximum of 1"),
        (("betas",), [1.0], "1.0 is greater than or equal to the maximum of 1"),
        (("betas",), [-0.1], "-0.1 is less than the minimum of 0"),
        (("heads",), {"images": 0}, r"On instance\['heads'\]\['images'\]"),
        (("heads",), {"split": "test"}, r"'test' is not one of \['train', 'val'\]"),
        (
            ("heads",),
            {"top_share": 0},
            r"(?s)less than or equal to the minimum of 0.*instance\['heads'\]\['top_share'\]",
        ),
        (("heads",), {"top_share": 1.5}, r"(?s)greater than the maximum of 1.*instance\['heads'\]\['top_share'\]"),
        (
            ("semantics",),
            {"gamma": 0},
            r"(?s)less than or equal to the minimum of 0.*instance\['semantics'\]\['gamma'\]",
        ),
        (
            ("semantics",),
            {"masking": {"ratios": [0.1, 1.0]}},
            r"(?s)greater than or equal to the maximum of 1.*instance\['semantics'\]\['masking'\]\['ratios'\]",
        ),
        (
            ("semantics",),
            {"masking": {"ratios": [-0.05]}},
            r"(?s)less than the minimum of 0.*instance\['semantics'\]\['masking'\]\['ratios'\]",
        ),
        (("semantics",), {"keypoints": {"assign": "nearest"}}, r"'nearest' is not one of \['location', 'region'\]"),
        (
            ("attention",),
            {"mantissa_bits": 10},
            r"(?s)10 is not valid under any of the given schemas.*\['attention'\]\['mantissa_bits'\]",
        ),
        (("seeds",), [0, 0], r"(?s)has non-unique elements.*instance\['seeds'\]"),
        (("seeds",), [], r"(?s)should be non-empty.*instance\['seeds'\]"),
        (("seeds",), ["1"], r"(?s)'1' is not of type 'integer'.*instance\['seeds'\]"),
        (
            ("tables",),
            {"confidence": 1.0},
            r"(?s)greater than or equal to the maximum of 1.*\['tables'\]\['confidence'\]",
        ),
    ],
)
def test_schema_errors_name_the_key(path, value, message):
    with pytest.raises(WorkflowError, match=message):
        validated(with_change(path, value))


@pytest.mark.parametrize(
    "path, value, message",
    [
        (("experiments", "tiny", "img_size"), 18, "experiments.tiny.img_size: 18 is not divisible by patch_size 4"),
        (
            ("experiments", "tiny", "model"),
            "vit_nonexistent_patch16",
            "experiments.tiny.model: 'vit_nonexistent_patch16'",
        ),
        (("experiments", "tiny", "dataset"), "imagenet", "experiments.tiny.dataset: 'imagenet' is not one of"),
        (("experiments", "tiny", "pretrained"), "/no/such/weights.pth", "experiments.tiny.pretrained: weights file"),
        (
            ("datasets", "digits"),
            {"source": "imagefolder", "path": "/no/such/imagenet"},
            "datasets.digits.path: dataset folder '/no/such/imagenet' does not exist",
        ),
        (("datasets", "digits"), {"source": "url"}, "datasets.digits.url: required for source url"),
        (
            ("datasets", "digits", "class_names"),
            "/no/such/LOC_synset_mapping.txt",
            "datasets.digits.class_names: class names file '/no/such/LOC_synset_mapping.txt' does not exist",
        ),
        (
            ("resources",),
            {"interaction": {"gpus": 2}},
            "resources.interaction: 2 ranks on 2 GPUs, but only train and inference jobs run on several ranks",
        ),
        (
            ("resources",),
            {"train": {"gpus": 2, "ranks": 1}},
            "resources.train.ranks: 1 ranks on 2 GPUs; one rank per GPU",
        ),
        (
            ("resources",),
            {"train": {"gpus": 3}},
            "experiments.tiny.train_baseline.batch_size: 8 does not split over the 3 train ranks",
        ),
        (
            ("alphas",),
            [0.1, 0.10000001],
            "alphas, dip_alphas, winft.alpha: 0.1 and 0.10000001 share the label '0.1' in file names",
        ),
        (("betas",), [0.1234567], "betas, winft.beta: 0.1234567 is written '0.123457' in file names"),
        (("heads",), {"images": 2}, "heads.images: 2 images, but the image overview's t-SNE needs at least 4"),
        (
            ("heads",),
            {"sample": {"kind": "best_worst", "classes": 1, "per_class": 3}},
            "heads.sample: 1 x 3 images, but the image overview's t-SNE needs at least 4",
        ),
        (
            ("heads",),
            {"images": 100, "sample": {"kind": "best_worst"}},
            "heads.images: 100 is the size of a random sample",
        ),
        (
            ("pretraining", "decoder"),
            {"width": 30, "depth": 1, "heads": 4},
            "pretraining.decoder: 4 heads do not divide width 30",
        ),
        (("pretraining", "dataset"), "imagenette", "pretraining.dataset: 'imagenette' is not one of datasets"),
        (
            ("pretraining",),
            {"dataset": "digits", "order": "theta"},
            "pretraining.order: theta needs θ of the experiment's own data set",
        ),
        (
            ("pretraining", "recipe"),
            {"epochs": 2, "lr": 0.001, "batch_size": 8, "init": "timm"},
            "pretraining.recipe.init: 'timm'; pre-training starts from none",
        ),
    ],
)
def test_semantic_errors_name_the_key(path, value, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        validated(with_change(path, value))


@pytest.mark.slow
def test_bad_config_stops_snakemake_before_any_job(tmp_path):
    result = run_snakemake(tmp_path, with_change(("experiments", "tiny", "img_size"), 18), check=False)
    assert result.returncode != 0
    assert "experiments.tiny.img_size: 18 is not divisible by patch_size 4" in result.stderr + result.stdout
    assert not (tmp_path / "results").exists()


# model: what the refusal names (its class or block type). Small sizes: the check builds them on the meta device.
UNSUPPORTED_MODELS = {
    "vit_small_patch16_18x2_224": "builds a VisionTransformer whose blocks are ParallelThingsBlock",
    "vit_base_patch16_xp_224": "builds a VisionTransformer whose blocks are ParallelScalingBlock",
    "vit_base_patch16_rpn_224": "builds a VisionTransformer whose blocks are ResPostBlock",
    "vit_relpos_small_patch16_224": "builds timm's VisionTransformerRelPos (not VisionTransformer or Eva)",
    "resnet50": "builds timm's ResNet (not VisionTransformer or Eva)",
    "swin_tiny_patch4_window7_224": "builds timm's SwinTransformer (not VisionTransformer or Eva)",
}


@pytest.mark.parametrize("model, reason", sorted(UNSUPPORTED_MODELS.items()))
def test_models_the_stages_cannot_run_are_refused_by_class_or_block(model, reason):
    from patchinteract.models.families import model_problem

    problem = model_problem({"model": model, "img_size": 224, "patch_size": 16, "model_args": {}})
    assert problem.startswith(f"'{model}' {reason}; the stages run timm's VisionTransformer"), problem


def test_model_args_that_do_not_build_are_refused_by_the_check():
    from patchinteract.models.families import model_problem

    settings = {"model": "VisionTransformer", "img_size": 16, "patch_size": 4}
    assert model_problem(settings | {"model_args": {"embed_dim": 32, "num_heads": 2}}) is None
    assert "unexpected keyword argument 'embed_dims'" in model_problem(settings | {"model_args": {"embed_dims": 32}})
    assert "divisible by num_heads" in model_problem(settings | {"model_args": {"embed_dim": 30, "num_heads": 4}})


def test_model_check_is_remembered_by_settings_and_versions(tmp_path):
    from patchinteract.config import ModelCheck

    cache = tmp_path / "model_checks.json"
    settings = {"model": "resnet50", "img_size": 224, "patch_size": 16, "model_args": {}}
    assert "ResNet" in ModelCheck(cache).problem(settings)
    known = json.loads(cache.read_text())
    assert len(known) == 1
    # A later start reads the answer instead of building the model again.
    cache.write_text(json.dumps(dict.fromkeys(known, "remembered")))
    assert ModelCheck(cache).problem(settings) == "remembered"
    assert ModelCheck(cache).problem(settings | {"img_size": 192}) != "remembered"


@pytest.mark.slow
def test_a_model_the_stages_cannot_run_stops_snakemake_before_any_job(tmp_path):
    """Parallel blocks would train the whole baseline and then fail in the attention store: refused first."""
    config = with_change(("experiments", "tiny", "model"), "vit_small_patch16_18x2_224")
    config["experiments"]["tiny"]["model_args"] = {"embed_dim": 32, "depth": 2, "num_heads": 2}
    result = run_snakemake(tmp_path, config, check=False)
    assert result.returncode != 0
    assert (
        "experiments.tiny.model: 'vit_small_patch16_18x2_224' builds a VisionTransformer whose blocks are "
        "ParallelThingsBlock" in result.stderr + result.stdout
    )
    assert not (tmp_path / "results").exists() and not (tmp_path / ".snakemake/metadata").exists()  # no job ran


REAL_SCALE = {
    # config file: number of experiments
    "imagenet_vitb16.yaml": 1,
    "imagenet_table3.yaml": 4,
    "cub_vitb16.yaml": 1,
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(REAL_SCALE))
def test_real_scale_configs_validate_and_plan(tmp_path, name):
    """As a user runs it: from the repository root, the real-scale config replaces the demo's."""
    config = yaml.safe_load((REPO / "config" / name).read_text())
    overrides = []
    for dataset_name, dataset in config["datasets"].items():
        if dataset["source"] == "imagefolder":  # stand in for the cluster's ImageNet folder
            dataset["path"] = str(tmp_path / "imagenet")
            Path(dataset["path"]).mkdir(exist_ok=True)
            overrides.append(f"datasets={{{dataset_name}: {{path: {dataset['path']}}}}}")
    config = validated(config)
    assert len(config["experiments"]) == REAL_SCALE[name]
    result = snakemake_from_root("--configfile", f"config/{name}", *(["--config", *overrides] if overrides else []))
    # Only this config's experiments and datasets: none of the demo's (Snakemake would merge them in).
    assert planned_wildcards(result.stdout, "experiment") == set(config["experiments"])
    assert planned_wildcards(result.stdout, "dataset") == set(config["datasets"])
    splits = len(config["attention"]["splits"])
    stores_per_split = 2 if config["attention"]["store"] == "zarr" else 1
    counts = planned_jobs(result.stdout)
    assert counts["evaluate_baseline"] == REAL_SCALE[name]
    stage_jobs = sum(counts.get(r, 0) for r in ("attention_store", "interaction_store", "interaction_streaming"))
    assert stage_jobs == REAL_SCALE[name] * splits * stores_per_split
    # Every figure, at full scale too: with store none, Fig. 3 gets the figure images' attention.
    streamed = config["attention"]["store"] == "none"
    assert counts.get("attention_figure_store", 0) == (REAL_SCALE[name] if streamed else 0)
    with_winft = [e for e in config["experiments"] if "winft" in retrain_methods(config, e)]
    assert counts.get("figure_winft_windows", 0) == len(with_winft)
    assert counts["figure_accuracy_vs_interactions"] == 1
    for rule in ("figure_attention_rows", "figure_patch_interactions", "figure_image_panels"):
        assert counts[rule] == REAL_SCALE[name], rule
    # The head analyses of every experiment, on the paper's sample (the 10 best and 10 worst predicted classes,
    # 50 val images each; CUB's test split has fewer: all of each) streamed through the baseline.
    sample = config["heads"]["sample"]
    assert (sample["kind"], sample["classes"], sample["per_class"]) == (
        "best_worst",
        20,
        50 if "imagenet" in name else "all",
    )
    for rule in (
        "head_sample",
        "head_attention_streaming",
        "head_importance",
        "pattern_autoencoder",
        "attention_patterns",
        "image_overview",
        "head_summary",
        "figure_heads",
    ):
        assert counts[rule] == REAL_SCALE[name], rule
    # The semantic analyses of every experiment: val keypoints, θ streamed through the baseline, masking.
    for rule in ("semantics_streaming", "semantics_summary", "theta_masking", "figure_semantics"):
        assert counts[rule] == REAL_SCALE[name], rule
    # MAE pre-training (Wu et al.) of every experiment's ViT, 2 schedules x seeds, on ImageNette's classes of
    # the ImageNet tree (keypoints of both its splits beside the runs), or on CUB's own train split.
    subset = config["pretraining"]["dataset"]
    assert counts["pretrain_mae"] == REAL_SCALE[name] * 2 * len(config["seeds"])
    assert counts["mae_restoration"] == counts["figure_pretraining"] == REAL_SCALE[name]
    assert counts["keypoints"] == REAL_SCALE[name] * (1 if subset else 2)  # val, and train for the guided masks
    assert counts.get("pretraining_keypoints", 0) == (2 * REAL_SCALE[name] if subset else 0)
    if subset:
        assert len(config["datasets"][subset]["classes"]) == 10
    # The explorer page of every experiment, its images' attention computed again (store none), its size bounded.
    assert counts["explorer"] == counts["explorer_attention_store"] == REAL_SCALE[name]
    assert config["explorer"]["images"] != "all" and config["explorer"]["attention_layers"] != "all"


@pytest.mark.slow
def test_config_values_on_the_command_line_change_the_default():
    default = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    result = snakemake_from_root("--config", "retrain={methods: [vit]}")
    assert planned_wildcards(result.stdout, "experiment") == set(default["experiments"])
    counts = planned_jobs(result.stdout)
    assert counts["retrain_vit"] == 2 and counts["train_baseline"] == 2
    assert "retrain_awd" not in counts and "retrain_awd_dip" not in counts  # the demo's methods were replaced
    # The demo's head analyses run on the paper's kind of sample: its 5 best and 5 worst predicted digits.
    assert default["heads"]["sample"] == {"kind": "best_worst", "classes": 10, "per_class": "all"}
    assert counts["head_sample"] == counts["head_importance"] == 2


def test_branch_grid_follows_methods_alphas_and_betas(tiny_config):
    from patchinteract.grid import retrain_branches

    tiny_config = validated(tiny_config)
    tiny_config["alphas"], tiny_config["dip_alphas"], tiny_config["betas"] = [0.5, 0.1], [0.1], [0.2, 1.0]
    experiment = next(iter(tiny_config["experiments"]))
    tiny_config["retrain"]["methods"] = ["vit", "awd", "awd_dip", "winft"]
    assert retrain_branches(tiny_config, experiment) == [
        "vit",
        "awd_a0.5",
        "awd_a0.1",
        "awd_dip_a0.1_b0.2",
        "awd_dip_a0.1_b1",
        "winft",
    ]
    tiny_config["experiments"][experiment]["retrain_methods"] = ["awd"]
    assert retrain_branches(tiny_config, experiment) == ["awd_a0.5", "awd_a0.1"]


def test_a_branch_hash_changes_with_what_the_branch_reads_only(tiny_config):
    from patchinteract.grid import retrain_fingerprint

    tiny_config = validated(tiny_config)
    experiment = next(iter(tiny_config["experiments"]))
    before = {branch: retrain_fingerprint(tiny_config, experiment, branch, 0) for branch in ("vit", "winft")}
    assert before["vit"] != before["winft"]
    assert retrain_fingerprint(tiny_config, experiment, "vit", 1) != before["vit"]  # another retraining seed
    tiny_config["winft"]["ce_weight"] = 0.5  # WinFT's own setting
    tiny_config["retrain"]["methods"] = ["vit"]  # which branches exist
    tiny_config["seeds"] = [0, 1, 2]  # which seeds exist
    assert retrain_fingerprint(tiny_config, experiment, "vit", 0) == before["vit"]
    assert retrain_fingerprint(tiny_config, experiment, "winft", 0) != before["winft"]
    tiny_config["retrain"]["recipe"]["lr"] = 0.5  # the recipe every branch reads
    assert retrain_fingerprint(tiny_config, experiment, "vit", 0) != before["vit"]
    tiny_config["seed"] += 1  # the baseline's settings
    assert retrain_fingerprint(tiny_config, experiment, "vit", 0) != before["vit"]


@pytest.mark.slow
def test_one_branch_target_plans_only_that_branch(tmp_path, tiny_config):
    target = "results/tiny/retrain/awd_dip_a0.1_b0.2/seed0/metrics.json"
    counts = planned_jobs(run_snakemake(tmp_path, tiny_config, "--dry-run", target).stdout)
    assert counts == {
        "write_digits": 1,
        "dataset_manifest": 1,
        "train_baseline": 1,
        "attention_store": 2,
        "interaction_store": 2,
        "window_masks": 2,
        "token_masks": 2,
        "retrain_awd_dip": 1,
        "responsive_fields": 1,  # the val field store: E_O over kept patches is read from its o
    }


def test_canonical_sorts_every_dict_and_keeps_sequences_in_order():
    from collections import OrderedDict

    from patchinteract.config import canonical

    value = OrderedDict(b=[{"y": 1, "x": (2, {"q": 0, "p": 1})}], a={"d": None, "c": 0.5})
    result = canonical(value)
    assert repr(result) == "{'a': {'c': 0.5, 'd': None}, 'b': [{'x': (2, {'p': 1, 'q': 0}), 'y': 1}]}"
    assert type(result) is dict and result == value  # the same meaning
    assert canonical([3, 1, 2]) == [3, 1, 2] and canonical("s") == "s"


def test_command_line_values_read_as_yaml_scalars():
    from patchinteract.config import command_line_values

    # What Snakemake's parse_config hands over for: betas=[0.1,.2] data={check_threads: 2, on_corrupt: skip}
    # device=cuda:1 experiments={x: {pretrained: null, model_args: {class_token: false}}} and a quoted '[1]'
    overrides = {
        "betas": ["0.1", ".2"],
        "data": {"check_threads": "2", "on_corrupt": "skip"},
        "device": "cuda:1",
        "experiments": {"x": {"pretrained": "null", "model_args": {"class_token": "false"}}},
        "seed": 3,
        "name": "[1]",
    }
    assert command_line_values(overrides) == {
        "betas": [0.1, 0.2],
        "data": {"check_threads": 2, "on_corrupt": "skip"},
        "device": "cuda:1",
        "experiments": {"x": {"pretrained": None, "model_args": {"class_token": False}}},
        "seed": 3,
        "name": "[1]",
    }


def test_params_records_are_re_spelled_with_their_values_unchanged(tmp_path):
    import json

    from patchinteract.config import canonical_params_change, rewrite_records

    metadata = tmp_path / "metadata"
    (metadata / "@long").mkdir(parents=True)  # Snakemake splits a long record name into folders
    old = ["0.1", "{'model': 'VisionTransformer', 'img_size': 16}", "OrderedDict({'b': 1, 'a': 2})", "'text'"]
    record = {"rule": "train", "params": old, "input": ["a"], "record_format_version": 6}
    (metadata / "@long" / "rest").write_text(json.dumps(record))
    (metadata / "canonical").write_text(json.dumps(record | {"params": ["0.1", "{'a': 1}"]}))
    (metadata / "partial").write_text('{"rule": "tra')  # being written: left alone
    assert rewrite_records(metadata, canonical_params_change) == 1
    rewritten = json.loads((metadata / "@long" / "rest").read_text())
    assert rewritten == record | {
        "params": sorted(
            ["0.1", "{'img_size': 16, 'model': 'VisionTransformer'}", "OrderedDict({'b': 1, 'a': 2})", "'text'"]
        )
    }
    assert (metadata / "partial").read_text() == '{"rule": "tra'
    assert rewrite_records(metadata, canonical_params_change) == 0  # idempotent
    assert sorted(p.name for p in metadata.rglob("*")) == ["@long", "canonical", "partial", "rest"]


def test_records_are_re_spelled_once_per_folder_then_only_the_marker_is_read(tmp_path):
    """The first start re-spells the folder's records and leaves the marker; later starts read only the marker
    (a record written non-canonical after it, which today's rules never write, is not even opened)."""
    import json

    from patchinteract.config import RESPELLED_MARKER, canonical_params_change, rewrite_records_once

    metadata = tmp_path / "metadata"
    assert rewrite_records_once(metadata, canonical_params_change) is None and not metadata.exists()
    metadata.mkdir()
    record = {"rule": "train", "params": ["{'b': 1, 'a': 2}"]}
    (metadata / "first").write_text(json.dumps(record))
    assert rewrite_records_once(metadata, canonical_params_change) == 1
    assert json.loads((metadata / "first").read_text())["params"] == ["{'a': 2, 'b': 1}"]
    assert (metadata / RESPELLED_MARKER).read_text().startswith("1 records re-spelled")
    (metadata / "later").write_text(json.dumps(record))
    assert rewrite_records_once(metadata, canonical_params_change) is None
    assert json.loads((metadata / "later").read_text()) == record


def test_notebook_paths_in_records_become_relative_and_other_inputs_stay(tmp_path, monkeypatch):
    """Records written while the rules named the notebooks by absolute path: those paths (and their
    checksums) are re-spelled relative to the working directory in the same pass as the params; a user's
    absolute input outside the notebooks' folder is left as the config names it."""
    import json

    from patchinteract.config import canonical_params_change, relative_input_change, rewrite_records

    monkeypatch.chdir(tmp_path)
    notebook, checkpoint = str(tmp_path / "notebooks/fig.ipynb"), str(tmp_path / "checkpoints/vit")
    record = {
        "rule": "figure", "params": ["{'b': 1, 'a': 2}"], "input": [notebook, "results/u.zarr/zarr.json"],
        "input_checksums": {notebook: "sha256:1", "results/u.zarr/zarr.json": "sha256:2"},
    }  # fmt: skip
    weights = {"rule": "import_weights", "params": [], "input": [checkpoint], "input_checksums": {}}
    (tmp_path / "metadata").mkdir()
    (tmp_path / "metadata/figure").write_text(json.dumps(record))
    (tmp_path / "metadata/weights").write_text(json.dumps(weights))
    changes = (canonical_params_change, relative_input_change(tmp_path / "notebooks"))
    assert rewrite_records("metadata", *changes) == 1
    assert json.loads((tmp_path / "metadata/figure").read_text()) == record | {
        "params": ["{'a': 2, 'b': 1}"],
        "input": ["notebooks/fig.ipynb", "results/u.zarr/zarr.json"],
        "input_checksums": {"notebooks/fig.ipynb": "sha256:1", "results/u.zarr/zarr.json": "sha256:2"},
    }
    assert json.loads((tmp_path / "metadata/weights").read_text()) == weights
    assert rewrite_records("metadata", *changes) == 0


def test_a_job_gets_the_configured_value_of_its_label():
    """An α or β reaches a job as the config spells it; its wildcard is only the file-name label."""
    from patchinteract.grid import value_with_label

    assert value_with_label([0.1, 0.25, 1.0], "0.25") == 0.25
    assert value_with_label([0.1, 0.25, 1.0], "1") == 1.0
    with pytest.raises(KeyError, match="'0.3'"):
        value_with_label([0.1, 0.25], "0.3")


def test_a_config_that_does_not_ask_for_pretraining_gets_none_and_is_told_the_bill(tmp_path):
    """No pretraining section (a config written for Ma et al.'s tables): no MAE job is planned, and before
    any job the plan says what each training kind processes and that pre-training is left out."""
    config = {key: value for key, value in copy.deepcopy(TINY_CONFIG).items() if key != "pretraining"}
    result = run_snakemake(tmp_path, config, "--dry-run")
    counts = planned_jobs(result.stdout)
    assert "pretrain_mae" not in counts and counts["retrain_awd"] == 4
    said = result.stdout + result.stderr
    # the digits' 50 images with a val share of 0.4: 30 train images; vit, awd at two α, awd_dip, winft: 5
    # branches × 2 seeds
    assert "tiny: baseline training, 1 run × 2 epochs × 30 images = 60" in said
    assert "tiny: retraining of 5 branches, 10 runs × 1 epoch × 30 images = 300" in said
    assert "not run: pretraining (pretraining.enabled is false)" in said
    asked = run_snakemake(tmp_path, copy.deepcopy(TINY_CONFIG), "--dry-run")
    assert planned_jobs(asked.stdout)["pretrain_mae"] == 4  # random and guided, two seeds
    assert "tiny: MAE pre-training, 4 runs × 3 epochs × 30 images = 360" in asked.stdout + asked.stderr


# The last commit whose Snakemake records hold params dicts in config-file order.
PREVIOUS_CODE = "d57cc42"


@pytest.mark.slow
def test_results_of_the_previous_code_are_not_rerun(tmp_path):
    """A results folder made by the code before params were canonical and before the retraining rules were made
    in a loop over the kinds of branch: today's code re-spells its records on start (same values, sorted keys;
    the retraining rule's script line indented as today) and plans nothing, where without that every job would
    rerun."""
    from patchinteract.config import RESPELLED_MARKER, canonical_params_change, rewrite_records

    archive = subprocess.run(["git", "archive", PREVIOUS_CODE], cwd=REPO, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tmp_path)], input=archive, check=True)
    targets = [
        "results/tiny/model/metrics.json",
        "results/tiny/masks/val/window_a0.5.zarr/zarr.json",
        "results/tiny/retrain/vit/seed0/metrics.json",
    ]
    config = {key: value for key, value in TINY_CONFIG.items() if key != "pretraining"}  # a section it lacks
    run_from_root(tmp_path, config, *targets)
    records = tmp_path / ".snakemake/metadata"
    before = {path.name: json.loads(path.read_text()) for path in records.iterdir()}
    scratch = tmp_path.parent / "records_copy"
    shutil.copytree(records, scratch)
    assert rewrite_records(scratch, canonical_params_change) >= 5  # the records are not canonical: they would rerun

    repository_copy(tmp_path)  # today's code over the same checkout, as `git pull` does
    result = run_from_root(tmp_path, config, "--dry-run", *targets)
    assert "Nothing to be done" in result.stdout + result.stderr
    after = {path.name: path.read_text() for path in records.iterdir()}
    assert after.keys() == before.keys() | {RESPELLED_MARKER}
    after = {name: json.loads(text) for name, text in after.items() if name != RESPELLED_MARKER}
    recoded = {(record["rule"], before[name]["code"], record["code"]) for name, record in after.items()}
    assert {(rule, old, new) for rule, old, new in recoded if old != new} == {
        ("retrain_vit", '        "../workflow_scripts/retrain.py"\n', '            "../workflow_scripts/retrain.py"\n')
    }
    respelled = {path.name: json.loads(path.read_text()) for path in scratch.iterdir()}
    assert {name: record | {"code": None} for name, record in after.items()} == {
        name: record | {"code": None} for name, record in respelled.items()
    }
