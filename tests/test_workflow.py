"""The real Snakemake DAG on the tiny config, every stage; rerunning one branch; lint and formatting."""

import base64
import copy
import json
import os
import random
import re
import shutil
import signal
import subprocess
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import zarr
from conftest import (
    SNAKEMAKE,
    bokeh_data,
    planned_jobs,
    repository_copy,
    run_from_root,
    run_snakemake,
    write_config,
)

from patchinteract.interaction.maps import dip_score, interaction_map

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A finished run of the tiny config, from the root of a copy of the repository."""
    from conftest import TINY_CONFIG

    root = repository_copy(tmp_path_factory.mktemp("tiny_run"))
    run_from_root(root, TINY_CONFIG)
    return root


def test_dag_builds_stores_with_the_contracted_layout(tiny_run):
    results = tiny_run / "results"
    metrics = json.loads((results / "tiny/model/metrics.json").read_text())
    assert metrics["n_images"] == 20 and metrics["n_patches"] == 16 and 0 <= metrics["top1"] <= 100
    assert {"experiment", "dataset", "model", "img_size", "patch_size", "config_hash", "code_revision"} <= set(metrics)
    for split, n in (("train", 30), ("val", 20)):
        attention = zarr.open_group(results / f"tiny/attention/{split}.zarr", mode="r")
        interaction = zarr.open_group(results / f"tiny/interaction/{split}.zarr", mode="r")
        attn = attention["attn"][:]
        assert attn.shape == (n, 2, 2, 17, 17) and attention["attn"].chunks[0] == 4
        assert interaction["U"].shape == (n, 16, 16) and interaction["dip_score"].shape == (n, 16)
        assert interaction["U"].dtype == np.float32
        np.testing.assert_array_equal(interaction["U"][:], interaction_map(attn, 1))
        np.testing.assert_array_equal(interaction["dip_score"][:], dip_score(interaction["U"][:]))
        assert interaction.attrs["grid"] == [4, 4] and interaction.attrs["split"] == split
    for rule in ("write_digits", "dataset_manifest", "train_baseline", "evaluate_baseline", "attention_store"):
        assert list((results / "logs" / rule).glob("*.log")), f"no log for {rule}"
    assert "images/s" in (results / "logs/attention_store/tiny_val.log").read_text()
    # Every job ran warm (config warm_start: auto, device cpu): one fork per job (but `all`, which runs no script),
    # each ended well.
    steps = re.search(r"(\d+) of \1 steps \(100%\) done", next((tiny_run / ".snakemake/log").glob("*.log")).read_text())
    forks = (tiny_run / ".snakemake/patchinteract/warm_start.log").read_text()
    assert steps and forks.count(": {'exit': 0}") == int(steps[1]) - 1 == len(re.findall(r"job \d+: /", forks))


def test_stores_open_without_warnings(tiny_run):
    """Rules declare a store's zarr.json, so Snakemake writes no timestamp file that zarr would report."""
    stores = sorted((tiny_run / "results").rglob("*.zarr"))
    # attention 2, interaction 2, masks 2 x (2 windows + keep + fields), the figures' val keep stores
    # (figures.dip_betas: 0.07, 0.5) 2, winft figure 1 per seed (2), head attention and pattern codes 2, val keypoints,
    # figure keypoints and semantics 3
    assert len(stores) == 24  # and the guided masks' train keypoints and figure keypoints, restoration examples
    for store in stores:
        assert sorted(p.name for p in store.iterdir() if not p.is_dir()) == ["zarr.json"], store
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            members = [name for name, _ in zarr.open_group(store, mode="r").members()]
        assert "image_id" in members, store


# The keys of every retrained branch's metrics.json (docs/results.md).
RETRAIN_KEYS = set(
    "experiment dataset model img_size patch_size n_patches method alpha beta seed top1 top5 eo train_seconds steps "
    "config_hash code_revision".split()
)


BRANCHES = ("vit", "awd_a0.5", "awd_a0.1", "awd_dip_a0.1_b0.2", "winft")


def test_every_branch_is_retrained_with_its_masks(tiny_run):
    results = tiny_run / "results/tiny"
    metrics = {
        branch: json.loads((results / "retrain" / branch / "seed0/metrics.json").read_text()) for branch in BRANCHES
    }
    for branch, values in metrics.items():
        assert RETRAIN_KEYS <= set(values), branch
        assert values["steps"] == 3 and 0 <= values["top1"] <= 100  # 1 epoch of 30 images at batch 8
        assert not (results / "retrain" / branch / "seed0/checkpoint.pt").exists()
        # seeds: [0, 1]: a second run of every branch with its own seed and hash; the masks are shared
        other = json.loads((results / "retrain" / branch / "seed1/metrics.json").read_text())
        assert (values["seed"], other["seed"]) == (0, 1) and values["config_hash"] != other["config_hash"]
        assert other["eo"] == values["eo"] or branch == "winft"  # WinFT's E_O is of its own predicted windows
    assert metrics["vit"]["eo"] == 256 and metrics["vit"]["method"] == "vit"  # N^2 on a 4x4 grid
    windows = zarr.open_group(results / "masks/val/window_a0.1.zarr", mode="r")
    keep = zarr.open_group(results / "masks/val/keep_b0.2.zarr", mode="r")
    assert metrics["awd_a0.1"]["eo"] == pytest.approx(windows["o"][:].mean())
    assert metrics["awd_a0.1"]["eo"] <= metrics["awd_a0.5"]["eo"] <= 256
    assert (keep["keep"][:].sum(axis=1) == 13).all()  # floor(0.2 * 16) = 3 patches dropped
    assert metrics["awd_dip_a0.1_b0.2"]["eo"] < metrics["awd_a0.1"]["eo"]
    assert (metrics["awd_dip_a0.1_b0.2"]["alpha"], metrics["awd_dip_a0.1_b0.2"]["beta"]) == (0.1, 0.2)
    fields = zarr.open_group(results / "masks/val/fields_a0.1_b0.2.zarr", mode="r")
    assert fields["field_size"].shape == (20, 16) and fields["tendency"].shape == (20, 16, 2)


def test_winft_is_trained_against_the_responsive_fields(tiny_run):
    results = tiny_run / "results/tiny/retrain/winft/seed0"
    metrics = json.loads((results / "metrics.json").read_text())
    assert RETRAIN_KEYS <= set(metrics) and metrics["method"] == "winft"
    assert 0 < metrics["eo"] < 256 and 0 <= metrics["window_iou"] <= 1  # predicted W over the 16x16 block
    assert (metrics["alpha"], metrics["beta"]) == (0.1, 0.2)
    figure = zarr.open_group(results / "figure_windows.zarr", mode="r")
    assert figure["predicted"].shape == (2, 2, 16, 16) and figure["target"].shape == (2, 16, 16)
    assert figure["predicted"].dtype == bool and figure["target"][:].any()


def test_tables_hold_every_metrics_file_and_aggregate_the_seeds(tiny_run):
    import pyarrow.parquet as pq

    results = tiny_run / "results"
    files = sorted(results.glob("tiny/model/metrics.json")) + sorted(results.glob("tiny/retrain/*/seed*/metrics.json"))
    runs = pq.read_table(results / "tables/runs.parquet").to_pylist()  # pyarrow alone reads it
    assert len(runs) == len(files) == 1 + 2 * len(BRANCHES)
    by_file = {row["metrics_file"]: row for row in runs}
    for path in files:
        row = by_file[str(path.relative_to(tiny_run))]
        for key, value in json.loads(path.read_text()).items():
            assert row[key] == pytest.approx(value) if isinstance(value, float) else row[key] == value, key
        # the per-image predictions beside it reproduce its top-1 exactly
        predictions = pd.read_parquet(path.with_name("predictions.parquet"))
        assert len(predictions) == row["n_images"] == 20 and predictions["image_id"].is_unique
        assert 100.0 * predictions["correct"].sum() / len(predictions) == row["top1"]
        assert (predictions["correct"] == (predictions["prediction"] == predictions["label"])).all()
        assert ((0 <= predictions["p_true"]) & (predictions["p_true"] <= 1)).all()
        assert all(
            len(top) == 5 and top[0] == first
            for top, first in zip(predictions["top5"], predictions["prediction"], strict=True)
        )

    def top1(branch, seed):
        return json.loads((results / f"tiny/retrain/{branch}/seed{seed}/metrics.json").read_text())["top1"]

    table1 = pq.read_table(results / "tables/table1_awd.parquet").to_pandas()
    assert table1["alpha"].tolist() == [1.0, 0.5, 0.1] and table1["method"].tolist() == ["vit", "awd", "awd"]
    assert table1["n_seeds"].tolist() == [2, 2, 2]
    assert table1["top1_mean"].tolist() == pytest.approx([(top1(b, 0) + top1(b, 1)) / 2 for b in BRANCHES[:3]])
    assert (table1["top1_ci_low"] <= table1["top1_mean"]).all() and (
        table1["top1_mean"] <= table1["top1_ci_high"]
    ).all()
    assert table1["diff"].iloc[1:].tolist() == pytest.approx(
        (table1["top1_mean"].iloc[1:] - table1["top1_mean"].iloc[0]).tolist()
    )
    assert table1["test"].iloc[1:].tolist() == ["paired_bootstrap"] * 2
    comparisons = pq.read_table(results / "tables/comparisons.parquet").to_pandas()
    # every branch but the ViT: each seed alone (McNemar) and both together (paired bootstrap)
    assert len(comparisons) == 3 * (len(BRANCHES) - 1)
    assert sorted(comparisons["seeds"].unique()) == ["0", "0,1", "1"]
    assert set(comparisons.loc[comparisons["seeds"] != "0,1", "test"]) == {"mcnemar_exact"}
    table3 = pq.read_table(results / "tables/table3_winft.parquet").to_pylist()
    winft = [json.loads((results / f"tiny/retrain/winft/seed{s}/metrics.json").read_text()) for s in (0, 1)]
    assert len(table3) == 1 and table3[0]["winft_eo"] == pytest.approx((winft[0]["eo"] + winft[1]["eo"]) / 2)
    assert table3[0]["vit_top1_mean"] == pytest.approx((top1("vit", 0) + top1("vit", 1)) / 2)
    markdown = (results / "tables/table1_awd.md").read_text()
    assert "| experiment |" in markdown and " ± " in markdown
    table4 = pq.read_table(results / "tables/table4_transfer.parquet").to_pylist()
    assert table4 == table3  # digits is a transfer dataset by default (its name is not imagenet*)


def test_figures_are_rendered_by_papermill(tiny_run):
    from PIL import Image

    figures = tiny_run / "results/figures"
    expected = {
        "accuracy_vs_interactions": (400, 300),
        "tiny/winft_windows": (800, 600),
        "tiny/fig5_interaction_map": (1200, 400),
        "tiny/fig6_dip": (1000, 300),
        "tiny/fig7_fields": (1200, 400),
        "tiny/fig3_attention_rows": (1000, 600),
        "tiny/fig9_image_panels": (1500, 800),
    }
    for stem, min_size in expected.items():
        with Image.open(figures / f"{stem}.png") as image:
            width, height = image.size
            assert width >= min_size[0] and height >= min_size[1], stem
            darkest, brightest = image.convert("L").getextrema()
            assert brightest - darkest > 100  # not a blank canvas
        assert (figures / f"{stem}.pdf").stat().st_size > 1000
    executed = (figures / "notebooks/tiny_winft_windows.ipynb").read_text()
    assert '"tags": [' in executed and "injected-parameters" in executed  # papermill's record
    # A notebook names each figure it saves; every one is a figure its rule declares (none goes unnoticed).
    drawn = {str(path.relative_to(tiny_run)) for path in figures.rglob("*") if path.is_file()}
    assert drawn and drawn <= recorded_paths(tiny_run, "metadata"), sorted(drawn - recorded_paths(tiny_run, "metadata"))


def test_head_analyses_write_their_tables_stores_and_figures(tiny_run):
    from PIL import Image

    from patchinteract.analyses.heads.strength import head_measures

    heads = tiny_run / "results/tiny/heads/val"
    key = ["image_id", "layer", "head"]
    importance = pd.read_parquet(heads / "head_importance.parquet")
    assert len(importance) == 20 * 2 * 2 * 6  # val images x layers x heads x modes
    assert {*key, "mode", "prob", "jsd", "cls_distance", "patch_distance", "top5_class", "top5_prob"} <= set(
        importance.columns
    )
    assert importance.query("mode == 0")[["prob", "jsd", "cls_distance", "patch_distance"]].abs().max().max() < 1e-5
    images = pd.read_parquet(heads / "head_importance_images.parquet")
    assert len(images) == 20 and len(images["top5_class"].iloc[0]) == 5
    # P_ij[y] beside I_prob = P[y] - P_ij[y]: together the unpruned true-class probability
    merged = importance.merge(images[["image_id", "true_prob"]], on="image_id")
    np.testing.assert_allclose(merged["prob"] + merged["pruned_prob"], merged["true_prob"], atol=1e-6)
    # The head-attention store holds eq. 7 of the attention store's maps, image for image.
    attention = zarr.open_group(tiny_run / "results/tiny/attention/val.zarr", mode="r")
    store = zarr.open_group(heads / "attention.zarr", mode="r")
    strength, distance = head_measures(attention["attn"][:], 1, (4, 4))
    np.testing.assert_allclose(store["strength"][:], strength, rtol=1e-6)
    np.testing.assert_allclose(store["mean_distance"][:], distance, rtol=1e-6)
    np.testing.assert_array_equal(store["image_id"][:], attention["image_id"][:])
    assert store["patch_top"].shape == (20, 2, 2, 2) and store["cls_pattern"].shape == (20, 2, 2, 33)
    per_hop = pd.read_parquet(heads / "attention_strength.parquet")
    assert len(per_hop) == 20 * 2 * 2 * 4 and {*key, "hop", "strength"} <= set(per_hop.columns)
    per_head = pd.read_parquet(heads / "head_strength.parquet")
    assert per_head["entropy"].between(0, 1).all() and {*key, "entropy", "mean_distance"} <= set(per_head.columns)
    patterns = pd.read_parquet(heads / "attention_patterns.parquet")
    assert len(patterns) == 80 and patterns[["cls_x", "cls_y", "patch_x", "patch_y"]].notna().all().all()
    clusters = pd.read_parquet(heads / "pattern_clusters.parquet")
    assert clusters["size"].sum() == 80 and set(patterns["cluster"]) == set(clusters["cluster"])
    assert len(clusters["mean_matrix"].iloc[0]) == 16 * 16 and clusters["name"].str.len().gt(0).all()
    overview = pd.read_parquet(heads / "image_overview.parquet")
    assert len(overview) == 20 and {"image_id", "x", "y", "label"} <= set(overview.columns)
    codes = zarr.open_group(heads / "pattern_codes.zarr", mode="r")
    assert codes["codes"].shape == (20, 2, 2, 16)
    np.testing.assert_array_equal(codes["image_id"][:], attention["image_id"][:])
    assert (heads / "pattern_autoencoder.safetensors").is_file()
    assert not (heads / "pattern_autoencoder_checkpoint.pt").exists()
    summary = pd.read_parquet(tiny_run / "results/tables/head_summary_tiny_val.parquet")
    assert len(summary) == 4 and summary["images"].eq(20).all()
    assert {"prob_mean", "prob_std", "entropy_mean", "mean_distance_mean", "cluster", "pattern"} <= set(summary.columns)
    # Intervals of each mean and rank over the images (tests/test_analysis_intervals.py checks them by hand)
    assert (summary["prob_ci_low"] <= summary["prob_mean"]).all() and (
        summary["prob_mean"] <= summary["prob_ci_high"]
    ).all()
    assert (summary["jsd_rank_low"] <= summary["jsd_rank"]).all() and (
        summary["jsd_rank"] <= summary["jsd_rank_high"]
    ).all()
    assert sorted(summary["prob_rank"]) == [1, 2, 3, 4] and summary["prob_top_k"].dtype == bool
    assert "among the 5 most important for sure" in (tiny_run / "results/logs/head_summary/tiny_val.log").read_text()
    for name in (
        "fig7_head_importance",
        "head_pruning_modes",
        "fig8_head_entropy",
        "fig12_pattern_layouts",
        "fig13_pattern_clusters",
    ):
        with Image.open(tiny_run / f"results/figures/tiny/{name}_val.png") as image:
            assert min(image.size) > 300 and image.convert("L").getextrema()[1] > 100, name


def test_semantic_analyses_write_their_stores_tables_and_figures(tiny_run):
    from PIL import Image

    from patchinteract.analyses.semantics.interrelation import semantic_reductions

    semantics = tiny_run / "results/tiny/semantics/val"
    keypoints = zarr.open_group(semantics / "keypoints.zarr", mode="r")
    counts = keypoints["keypoints"][:]
    attention = zarr.open_group(tiny_run / "results/tiny/attention/val.zarr", mode="r")
    assert counts.shape == (20, 16) and counts.dtype == np.int32 and counts.sum() > 0
    np.testing.assert_array_equal(keypoints["image_id"][:], attention["image_id"][:])
    store = zarr.open_group(semantics / "semantics.zarr", mode="r")
    expected = semantic_reductions(attention["attn"][:], 1, counts)
    for name in ("theta_kk", "theta_nk", "focus_index", "theta_patch"):
        np.testing.assert_allclose(store[name][:], expected[name], rtol=1e-6, err_msg=name)
    theta = pd.read_parquet(semantics / "theta.parquet")
    assert len(theta) == 20 * 2 * 2
    assert {"image_id", "layer", "head", "theta_kk", "theta_nk", "theta_kn", "theta_nn", "focus_index"} <= set(theta)
    summary = pd.read_parquet(tiny_run / "results/tables/semantics_summary_tiny_val.parquet")
    assert len(summary) == 4 and summary["images"].eq(20).all()
    assert (summary["images_without_kk"] == int((counts.sum(axis=1) == 0).sum())).all()
    masking = pd.read_parquet(semantics / "theta_masking.parquet")
    baseline = json.loads((tiny_run / "results/tiny/model/metrics.json").read_text())["top1"]
    at_zero = masking[masking["r"] == 0]
    assert (at_zero["top1"] == baseline).all()  # exactly the baseline's evaluation
    assert sorted(masking["r"].unique()) == [0, 0.05, 0.1, 0.2, 0.3, 0.4]
    assert masking.groupby("order")["seed"].nunique().to_dict() == {"bottom": 0, "random": 3, "top": 0}
    per_image = pd.read_parquet(semantics / "theta_masking_predictions.parquet")
    assert len(per_image) == 20 * len(masking)
    variants = ["r", "order", "seed"]
    counted = per_image.fillna({"seed": -1}).groupby(variants)["correct"].agg(["sum", "size"]).reset_index()
    merged = masking.fillna({"seed": -1}).merge(counted, on=variants)
    assert len(merged) == len(masking) and (100.0 * merged["sum"] / merged["size"] == merged["top1"]).all()
    # How sure masking by θ is: each point's interval; each order against each random mask and over the three
    points = pd.read_parquet(tiny_run / "results/tables/theta_masking_tiny.parquet")
    assert len(points) == len(masking) and (points["top1_ci_low"] <= points["top1"]).all()
    assert (points["top1"] <= points["top1_ci_high"]).all()
    tests = pd.read_parquet(tiny_run / "results/tables/theta_masking_tests_tiny.parquet")
    assert len(tests) == 5 * 2 * (3 + 1) and set(tests["test"]) == {"mcnemar_exact", "paired_bootstrap"}
    top, random = (per_image[(per_image["r"] == 0.4) & (per_image["order"] == order)] for order in ("top", "random"))
    random = random[random["seed"] == 1]
    by_hand = 100.0 * (top.sort_values("image_id")["correct"].mean() - random.sort_values("image_id")["correct"].mean())
    row = tests[(tests["r"] == 0.4) & (tests["order"] == "top") & (tests["control_seed"] == 1)].iloc[0]
    assert row["diff"] == pytest.approx(by_hand) and row["diff_ci_low"] <= row["diff"] <= row["diff_ci_high"]
    layers = pd.read_parquet(tiny_run / "results/tables/semantics_layers_tiny_val.parquet")
    paired = theta.dropna(subset=["theta_kk", "theta_nk"]).groupby(["image_id", "layer"])[["theta_kk", "theta_nk"]]
    per_layer = paired.mean().eval("theta_kk - theta_nk").groupby("layer").mean()
    np.testing.assert_allclose(layers["kk_minus_nk"], per_layer.to_numpy())
    assert layers["images_paired"].eq(paired.ngroups // 2).all()  # the images with both kinds, in both layers
    figure_keypoints = zarr.open_group(semantics / "figure_keypoints.zarr", mode="r")
    assert figure_keypoints["view"].shape == (4, 16, 16, 3)
    for name in ("theta_per_layer", "focus_index_per_layer", "theta_masking", "theta_masked_patches"):
        with Image.open(tiny_run / f"results/figures/tiny/{name}.png") as image:
            assert min(image.size) > 250 and image.convert("L").getextrema()[1] > 100, name
    # semantics.splits: [val]; of train only the keypoints, which the guided MAE masks read
    assert sorted(p.name for p in (tiny_run / "results/tiny/semantics/train").iterdir()) == [
        "figure_keypoints.zarr",
        "keypoints.zarr",
    ]


def test_report_gathers_figures_and_tables(tiny_run):
    from conftest import TINY_CONFIG

    run_from_root(tiny_run, TINY_CONFIG, "--report", "results/report.html")
    report = (tiny_run / "results/report.html").read_text()
    for name in (
        "fig5_interaction_map",
        "fig9_image_panels",
        "winft_windows",
        "table1_awd",
        "table3_winft",
        "fig8_head_entropy",
        "theta_masking",
    ):
        assert name in report, name
    assert "Fig. 10" in report  # a caption


def test_changing_one_alpha_reruns_only_its_branches(tiny_run):
    from conftest import TINY_CONFIG

    changed = json.loads(json.dumps(TINY_CONFIG))
    changed["alphas"] = [0.5, 0.3]  # 0.1 stays as a dip_alpha
    counts = planned_jobs(run_from_root(tiny_run, changed, "--dry-run").stdout)
    # Its two seeds; the tables and the figure drawn from Table I follow, and the explorer, which shows every α.
    assert counts == {
        "window_masks": 2,
        "retrain_awd": 2,
        "tables": 1,
        "figure_accuracy_vs_interactions": 1,
        "explorer": 1,
        "all": 1,
    }


def changed_plan(root, **changes) -> dict[str, int]:
    """Jobs a dry run from the root plans after changing config keys ('a.b': value)."""
    from conftest import TINY_CONFIG

    changed = json.loads(json.dumps(TINY_CONFIG))
    for key, value in changes.items():
        *parents, last = key.split(".")
        section = changed
        for parent in parents:
            section = section.setdefault(parent, {})
        section[last] = value
    result = run_from_root(root, changed, "--dry-run")
    return planned_jobs(result.stdout) if "Nothing to be done" not in result.stdout + result.stderr else {}


def test_settings_rerun_exactly_the_jobs_that_read_them(tiny_run):
    from conftest import TINY_CONFIG

    experiments = len(TINY_CONFIG["experiments"])
    # Two settings per dry run where the jobs they plan cannot overlap (a dry run from the root costs ~20 s).
    # Table IV's datasets: the tables, and the figure drawn from Table I; a figure setting: that figure only.
    # The intervals' level: every job that writes an interval and what shows it, and no forward pass but the
    # restoration's (masking by θ and the head analyses keep theirs).
    changes = {"tables.transfer_datasets": ["digits"], "figures.image_index": 1, "tables.confidence": 0.9}
    assert changed_plan(tiny_run, **changes) == {
        "tables": 1,
        "figure_accuracy_vs_interactions": 1,
        "figure_patch_interactions": experiments,
        "head_summary": experiments,
        "figure_heads": experiments,
        "explorer": experiments,
        "semantics_summary": experiments,
        "theta_masking_table": experiments,
        "figure_semantics": experiments,
        "mae_restoration": experiments,
        "pretraining_table": experiments,
        "figure_pretraining": experiments,
        "all": 1,
    }
    # The retrain recipe: every branch and what reads them, not the baseline nor any store.
    plan = changed_plan(tiny_run, **{"retrain.recipe.lr": 0.002})
    assert {"retrain_vit", "retrain_awd", "retrain_awd_dip", "retrain_winft", "tables"} <= set(plan)
    assert not {
        "train_baseline",
        "evaluate_baseline",
        "attention_store",
        "interaction_store",
        "window_masks",
        "token_masks",
        "responsive_fields",
    } & set(plan)
    # The number of pattern clusters: the clustering and what shows it; γ of the detection line: θ and
    # everything read from it, not the keypoints. The explorer shows both.
    assert changed_plan(tiny_run, **{"heads.clusters": 3, "semantics.gamma": 0.9}) == {
        "attention_patterns": experiments,
        "head_summary": experiments,
        "figure_heads": experiments,
        "semantics_store": experiments,
        "semantics_summary": experiments,
        "theta_masking": experiments,
        "theta_masking_table": experiments,
        "figure_semantics": experiments,
        "explorer": experiments,
        "all": 1,
    }
    # The colour of masked patches: the data set's mean colour once, the masking and its figure. The guided
    # curriculum's pace: the guided pre-training runs (one per seed, no random one) and what reads them.
    assert changed_plan(tiny_run, **{"semantics.masking.fill": "dataset_mean", "pretraining.rounds_per_step": 2}) == {
        "dataset_mean_colour": 1,
        "theta_masking": experiments,
        "theta_masking_table": experiments,
        "figure_semantics": experiments,
        "pretrain_mae": experiments * len(TINY_CONFIG["seeds"]),
        "mae_restoration": experiments,
        "pretraining_table": experiments,
        "figure_pretraining": experiments,
        "all": 1,
    }
    # How jobs run (loader workers, batch sizes, warm starts): nothing. Readable class names: what shows them.
    names = tiny_run / "class_names.txt"
    names.write_text("".join(f"{digit} digit {digit}\n" for digit in range(10)))
    how = {"data.loader_workers": 1, "eval.batch_size": 3, "attention.batch_size": 5, "heads.batch_images": 3}
    how["warm_start"] = False
    assert changed_plan(tiny_run, **how, **{"datasets.digits.class_names": str(names)}) == {
        "explorer": experiments,
        "figure_attention_rows": experiments,
        "figure_patch_interactions": experiments,
        "figure_image_panels": experiments,
        "figure_winft_windows": experiments,
        "all": 1,
    }


def dry_run_of_text(root, text: str, *args: str, name: str = "config.yaml") -> str:
    """A dry run from the root with a config file written as ``text``: its output, or '' for nothing to do."""
    (root / name).write_text(text)
    result = subprocess.run(
        [*SNAKEMAKE, "--configfile", name, "--cores", "2", "--dry-run", *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return "" if "Nothing to be done" in result.stdout + result.stderr else result.stdout


def planned_job_list(dry_run_stdout: str) -> list[tuple[str, str]]:
    """Every planned job of a dry run as (rule, wildcards), sorted."""
    jobs, rule = [], None
    for line in dry_run_stdout.splitlines():
        if line.startswith("rule ") or line.startswith("localrule "):
            if rule:
                jobs.append((rule, ""))
            rule = line.split()[1].rstrip(":")
        elif rule and line.strip().startswith("wildcards:"):
            jobs.append((rule, line.strip()))
            rule = None
    return sorted(jobs + ([(rule, "")] if rule else []))


def test_a_config_rewritten_in_another_key_order_reruns_nothing(tiny_run):
    """A rerun follows what the config means: keys sorted by a script (yaml.safe_dump), sections swapped,
    a key moved within its section, or the same config as JSON plan nothing on a finished run."""
    import yaml
    from conftest import TINY_CONFIG

    by_script = yaml.safe_dump(TINY_CONFIG)  # sorts keys at every depth, as sweep scripts write configs
    assert dry_run_of_text(tiny_run, by_script) == ""
    swapped = dict(reversed(list(TINY_CONFIG.items())))
    dataset = TINY_CONFIG["datasets"]["digits"]
    swapped["datasets"] = {"digits": {"val_fraction": dataset["val_fraction"]} | dataset}  # above `source`
    swapped["experiments"] = {"tiny": dict(reversed(list(TINY_CONFIG["experiments"]["tiny"].items())))}
    assert list(swapped) != list(TINY_CONFIG) and list(swapped["datasets"]["digits"])[0] == "val_fraction"
    assert dry_run_of_text(tiny_run, yaml.safe_dump(swapped, sort_keys=False)) == ""
    assert dry_run_of_text(tiny_run, json.dumps(swapped), name="config.json") == ""  # read as an OrderedDict
    # A change of meaning in a sorted rewrite still reruns exactly what reads it.
    changed = json.loads(json.dumps(TINY_CONFIG))
    changed["tables"] = {"transfer_datasets": ["digits"]}
    assert planned_jobs(dry_run_of_text(tiny_run, yaml.safe_dump(changed))) == {
        "tables": 1,
        "figure_accuracy_vs_interactions": 1,
        "all": 1,
    }


@pytest.mark.parametrize(
    "override, key, value, plans_jobs",
    [
        ("betas=[0.1,0.2,0.3]", "betas", [0.1, 0.2, 0.3], True),
        ("seeds=[0,1]", "seeds", [0, 1], False),  # the tiny run's seeds: nothing to do either way
        ("seeds=[0,1,2]", "seeds", [0, 1, 2], True),
        ("data={check_threads: 2}", "data", {"check_threads": 2}, False),
        ("dip_alphas=[0.05]", "dip_alphas", [0.05], True),
        ("winft={alpha: 0.05, beta: .5}", "winft", {"alpha": 0.05, "beta": 0.5}, True),
    ],
)
def test_command_line_values_plan_what_the_same_config_file_plans(tiny_run, override, key, value, plans_jobs):
    """``--config`` as typed: list items and nested values mean what the same YAML means in a config file
    (Snakemake hands them over as strings, which the schema refused)."""
    import yaml
    from conftest import TINY_CONFIG

    from_file = json.loads(json.dumps(TINY_CONFIG))
    from_file[key] = from_file[key] | value if isinstance(value, dict) else value
    expected = planned_job_list(dry_run_of_text(tiny_run, yaml.safe_dump(from_file, sort_keys=False)))
    typed = dry_run_of_text(tiny_run, yaml.safe_dump(TINY_CONFIG, sort_keys=False), "--config", override)
    assert planned_job_list(typed) == expected
    assert bool(expected) == plans_jobs


def test_second_run_has_nothing_to_do(tiny_run):
    from conftest import TINY_CONFIG

    result = run_from_root(tiny_run, TINY_CONFIG, "--dry-run")
    assert "Nothing to be done" in result.stdout + result.stderr


def test_a_finished_project_moved_to_another_folder_plans_nothing(tiny_run, tmp_path):
    """Scratch to project space, a laptop to the cluster: nothing that decides a rerun is an absolute path."""
    from conftest import TINY_CONFIG

    moved = tmp_path / "elsewhere"
    shutil.copytree(tiny_run, moved, symlinks=True)
    result = run_from_root(moved, TINY_CONFIG, "--dry-run")
    assert "Nothing to be done" in result.stdout + result.stderr, result.stdout[-3000:]


# A kind of retraining branch declared only by this test: AWD's windows under a name of its own, whose own
# settings (retrain.kind_settings.awd_own) reach its jobs beside the shared ones and override them.
OWN_KIND = """
from patchinteract.training.branch_kinds import WindowBranch


class OwnWindowBranch(WindowBranch):
    name = "awd_own"
    pattern = "awd_own_a{alpha}"
"""


def test_a_kind_of_branch_declared_in_a_file_is_planned_trained_hashed_and_tabulated(tiny_run, tmp_path):
    """A subclass in a file of retrain.kind_modules, no file of the repository touched: its rule is made from it,
    its branches span its grid (every α, every seed), it trains on its masks with its own settings, a change of
    those retrains its branches only, and the tables hold its runs and their comparisons with the ViT."""
    from conftest import TINY_CONFIG

    root = tmp_path / "project"
    shutil.copytree(tiny_run, root, symlinks=True)
    (root / "own_kind.py").write_text(OWN_KIND)
    config = copy.deepcopy(TINY_CONFIG)
    config["retrain"] |= {
        "methods": [*config["retrain"]["methods"], "awd_own"],
        "kind_modules": ["own_kind.py"],
        "kind_settings": {"awd_own": {"cls_in_window": False}},  # AWD's windows, no patch-to-CLS attention
    }
    tables = "results/tables/runs.parquet"
    assert planned_jobs(run_from_root(root, config, "--dry-run", tables).stdout) == {"retrain_awd_own": 4, "tables": 1}
    run_from_root(root, config, tables)
    retrain = root / "results/tiny/retrain"
    for alpha in ("0.5", "0.1"):
        for seed in (0, 1):
            own = json.loads((retrain / f"awd_own_a{alpha}/seed{seed}/metrics.json").read_text())
            awd = json.loads((retrain / f"awd_a{alpha}/seed{seed}/metrics.json").read_text())
            assert (own["method"], own["alpha"], own["beta"]) == ("awd_own", float(alpha), 0.0)
            assert own["eo"] == awd["eo"]  # E_O of the same window store
            assert own["config_hash"] != awd["config_hash"]
            weights = [
                (retrain / f"{branch}_a{alpha}/seed{seed}/model.safetensors").read_bytes()
                for branch in ("awd_own", "awd")
            ]
            assert weights[0] != weights[1]  # its own cls_in_window reached the training
    assert (root / "results/logs/retrain/tiny_awd_own_a0.5_seed1.log").is_file()
    runs = pd.read_parquet(root / tables)
    assert sorted(runs.loc[runs["method"] == "awd_own", "branch"]) == ["awd_own_a0.1"] * 2 + ["awd_own_a0.5"] * 2
    comparisons = pd.read_parquet(root / "results/tables/comparisons.parquet")
    own = comparisons[comparisons["method"] == "awd_own"]
    assert set(own["branch"]) == {"awd_own_a0.1", "awd_own_a0.5"} and set(own["reference"]) == {"vit"}
    assert set(own["seeds"]) == {"0", "1", "0,1"}
    # Its own settings are in its branches' hashes and nobody else's.
    config["retrain"]["kind_settings"]["awd_own"]["cls_in_window"] = True
    assert planned_jobs(run_from_root(root, config, "--dry-run", tables).stdout) == {"retrain_awd_own": 4, "tables": 1}


def test_local_weights_file_becomes_the_baseline(tiny_run, tmp_path, tiny_config):
    from safetensors.torch import load_file

    weights = load_file(tiny_run / "results/tiny/model/baseline.safetensors")
    torch.save({"model": weights}, tmp_path / "checkpoint.pth")
    tiny_config["experiments"]["tiny"]["pretrained"] = str(tmp_path / "checkpoint.pth")
    del tiny_config["experiments"]["tiny"]["train_baseline"]
    result = run_snakemake(tmp_path, tiny_config, "results/tiny/model/metrics.json")
    assert "import_weights" in result.stderr and "train_baseline" not in result.stderr
    imported = json.loads((tmp_path / "results/tiny/model/metrics.json").read_text())
    trained = json.loads((tiny_run / "results/tiny/model/metrics.json").read_text())
    assert imported["top1"] == trained["top1"]


def test_same_seed_gives_the_same_baseline_and_streaming_draws_fig3(tiny_run, tmp_path, tiny_config):
    """A second run of the same experiment (U streamed this time, its inference jobs on two ranks: neither
    touches the baseline's settings) trains the same baseline bit for bit, evaluates it on two ranks as on one,
    draws Fig. 3 from the figure images' attention, and streams the same head-attention and semantics stores as
    the Dask passes over the attention store of one rank. Every job starts cold here (warm_start: false), the
    tiny run's warm: the same outputs either way."""
    tiny_config["attention"] |= {"store": "none", "figure_images": 3}
    tiny_config["warm_start"] = False
    tiny_config["resources"] = {"inference": {"ranks": 2}}
    head_store, semantics_store = "results/tiny/heads/val/attention.zarr", "results/tiny/semantics/val/semantics.zarr"
    targets = [
        "results/tiny/model/metrics.json",
        "results/figures/tiny/fig3_attention_rows.png",
        f"{head_store}/zarr.json",
        f"{semantics_store}/zarr.json",
    ]
    run_snakemake(tmp_path, tiny_config, *targets)
    first = json.loads((tiny_run / "results/tiny/model/metrics.json").read_text())
    second = json.loads((tmp_path / "results/tiny/model/metrics.json").read_text())
    assert first == second  # the baseline, and its evaluation on two ranks: that of one
    predictions = [pd.read_parquet(root / "results/tiny/model/predictions.parquet") for root in (tiny_run, tmp_path)]
    pd.testing.assert_frame_equal(*predictions, check_exact=True)
    assert (tmp_path / "results/logs/evaluate_baseline/tiny.log.rank1").is_file()
    kept = zarr.open_group(tmp_path / "results/tiny/attention/val_figures.zarr", mode="r")
    full = zarr.open_group(tiny_run / "results/tiny/attention/val.zarr", mode="r")
    assert kept["attn"].shape == (3, *full["attn"].shape[1:])
    np.testing.assert_array_equal(kept["attn"][:], full["attn"][:3])
    np.testing.assert_array_equal(kept["image_id"][:], full["image_id"][:3])
    assert (tmp_path / "results/figures/tiny/fig3_attention_rows.png").stat().st_size > 10_000
    assert (tmp_path / "results/logs/interaction_streaming/tiny_val.log").is_file()
    assert not (tmp_path / "results/tiny/attention/val.zarr").exists()  # no full attention store
    # The head-attention store streamed during inference equals the one computed from the attention store.
    streamed = zarr.open_group(tmp_path / head_store, mode="r")
    from_store = zarr.open_group(tiny_run / head_store, mode="r")
    assert sorted(streamed.array_keys()) == sorted(from_store.array_keys())
    for name in streamed.array_keys():
        np.testing.assert_array_equal(streamed[name][:], from_store[name][:], err_msg=name)
    streamed = zarr.open_group(tmp_path / semantics_store, mode="r")
    from_store = zarr.open_group(tiny_run / semantics_store, mode="r")
    assert sorted(streamed.array_keys()) == sorted(from_store.array_keys())
    for name in streamed.array_keys():
        np.testing.assert_array_equal(streamed[name][:], from_store[name][:], err_msg=name)
    assert (tmp_path / "results/logs/semantics_store/tiny_val.log.rank1").is_file()
    assert not (tmp_path / ".snakemake/patchinteract/warm_start.log").exists()


def test_explorer_page_works_in_a_real_browser(tiny_run, browser):
    """The explorer page, opened from disk in headless Chromium: no console error; picking an image, a head
    and a patch shows exactly their stored data (attention rows within the page's uint8 quantisation)."""
    from browser import console_errors, open_explorer, wait_for

    explorer = tiny_run / "results/tiny/explorer"
    heads = tiny_run / "results/tiny/heads/val"
    attention = zarr.open_group(tiny_run / "results/tiny/attention/val.zarr", mode="r")
    overview = pd.read_parquet(heads / "image_overview.parquet")
    assert len(list((explorer / "data").glob("*.js"))) == len(overview) == 20
    driver = browser

    def page(script, *args):
        return driver.execute_script(script, *args)

    def source(name):
        return bokeh_data(driver, name)

    seconds = open_explorer(driver, explorer / "index.html")
    print(f"explorer interactive after {seconds:.2f} s")
    assert console_errors(driver) == []
    first = int(overview["image_id"].iloc[0])
    assert page("return PatchExplorer.state.image") == first

    # Classes are shown by their names (the class folders'; the digits' are 0-9): renamed here, the page
    # names the picked image's class and its top-5 so.
    assert page("return EXPLORER_PAGE.class_names") == [str(digit) for digit in range(10)]
    page("EXPLORER_PAGE.class_names = EXPLORER_PAGE.class_names.map((name) => 'digit ' + name)")

    # Pick an image as typing its id does: every view shows that image's data.
    image_id = int(overview["image_id"].iloc[7])
    page("Bokeh.documents[0].get_model_by_name('search').value = arguments[0]", str(image_id))
    wait_for(
        driver,
        "return PatchExplorer.state.image === arguments[0] && "
        "Bokeh.documents[0].get_model_by_name('status').text.includes('Image ' + arguments[0])",
        10,
        image_id,
    )
    importance = pd.read_parquet(heads / "head_importance.parquet").query("image_id == @image_id and mode == 1")
    # the probability line shows P_ij[y] (pruned_prob), as the paper's Head Importance View does
    for metric in ("pruned_prob", "jsd", "cls_distance", "patch_distance"):
        np.testing.assert_allclose(source("importance_source")[metric], importance[metric], rtol=1e-6, atol=1e-9)
    entropy = pd.read_parquet(heads / "head_strength.parquet").query("image_id == @image_id")["entropy"]
    np.testing.assert_allclose(source("entropy_source")["entropy"], entropy, atol=1e-4)
    picked = overview.index[overview["image_id"] == image_id][0]
    assert page("return Bokeh.documents[0].get_model_by_name('overview_source').selected.indices") == [picked]
    status = page("return Bokeh.documents[0].get_model_by_name('status').text")
    assert f"(class digit {overview['label'].iloc[picked]}, predicted digit " in status
    assert all(rank.startswith(f"{r + 1}: digit ") for r, rank in enumerate(source("top5_source")["rank"]))

    # Pick a head (as a click on it does) and a patch: the k-hop bars and the attention row are that head's.
    head_flat, layer, head, patch = 3, 1, 1, 5
    page("Bokeh.documents[0].get_model_by_name('importance_source').selected.indices = [arguments[0]]", head_flat)
    page("Bokeh.documents[0].get_model_by_name('patch_source').selected.indices = [arguments[0]]", patch)
    wait_for(driver, "return PatchExplorer.state.head === 3 && PatchExplorer.state.patch === 5", 10)
    hops = pd.read_parquet(heads / "attention_strength.parquet").query(
        "image_id == @image_id and layer == @layer and head == @head"
    )["strength"]
    np.testing.assert_allclose(source("khop_source")["strength"], hops, atol=1e-5)
    row = attention["attn"][int(np.flatnonzero(attention["image_id"][:] == image_id)[0]), layer, head, 1 + patch]
    shown = np.array(source("patch_source")["raw"], dtype=np.float64)
    np.testing.assert_allclose(shown, row[1:].astype(np.float64), atol=float(row.max()) / 510 + 1e-6)
    assert f"patch {patch}" in page("return Bokeh.documents[0].get_model_by_name('status').text")

    # Other overlays and the pattern toggle draw without errors.
    for overlay in ("U row", "AWD window", "responsive field", "DIP dropped", "keypoints", "θ"):
        page("Bokeh.documents[0].get_model_by_name('overlay').value = arguments[0]", overlay)
    page("Bokeh.documents[0].get_model_by_name('pattern_kind').active = 1")
    assert console_errors(driver) == []
    artifacts = Path(os.environ.get("PATCHINTERACT_ARTIFACTS", tiny_run))
    artifacts.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(artifacts / "explorer_tiny.png"))
    print(f"screenshot: {artifacts / 'explorer_tiny.png'}")


KILLS = 3
KILL_SEED = 2026


def recorded_paths(root: Path, folder: str) -> set[str]:
    """Output paths that Snakemake keeps a file for in .snakemake/<folder> (metadata: the outputs of
    finished jobs; incomplete: those of jobs that started and did not finish). The file's name is the
    path in URL-safe base64, split into folders named '@…' where it is long."""
    paths = set()
    for record in (root / ".snakemake" / folder).rglob("*"):
        if record.is_file() and not record.name.startswith("."):  # ours (.respelled-v2), not Snakemake's
            parts = record.relative_to(root / ".snakemake" / folder).parts
            encoded = "".join(part.removeprefix("@") for part in parts)
            paths.add(base64.urlsafe_b64decode(encoded).decode())
    return paths


def complete_outputs(root: Path) -> dict[str, int]:
    """Every output a finished job left, with its modification time (ns)."""
    outputs = recorded_paths(root, "metadata") - recorded_paths(root, "incomplete")
    return {path: (root / path).stat().st_mtime_ns for path in outputs if (root / path).exists()}


# Every kill lands in the first stages of a run (after 1-6 more outputs of finished jobs), so the killed run leaves
# out what is drawn from the tables and stores, and the MAE pre-training (its own branch of the DAG, four training
# jobs; training stopped and resumed: tests/test_training.py): its resume does not do again what the tiny run did.
LEFT_OUT = (
    "figure_heads", "figure_pretraining", "figure_accuracy_vs_interactions", "figure_winft_windows",
    "figure_patch_interactions", "figure_attention_rows", "figure_image_panels", "figure_semantics", "explorer",
    "pretrain_mae",
)  # fmt: skip


def killed_after(root: Path, outputs: int, delay: float, *args: str) -> bool:
    """Start snakemake in ``root`` and SIGKILL its whole process group (as a node failure or `kill -9` does)
    ``delay`` seconds after ``outputs`` more jobs' outputs are recorded as finished; False when the run finished
    first. Kills follow the run's progress, not the clock: a faster run (warm starts) is killed as deep in."""
    command = [*SNAKEMAKE, "--configfile", "config.yaml", "--cores", "2", *args]
    target = len(recorded_paths(root, "metadata")) + outputs
    process = subprocess.Popen(
        command, cwd=root, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    while len(recorded_paths(root, "metadata")) < target and process.poll() is None:
        time.sleep(0.1)
    try:
        process.wait(timeout=delay)
        assert process.returncode == 0, f"snakemake failed ({process.returncode}) before it was killed"
        return False
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return True


def table_frames(root: Path) -> dict[str, pd.DataFrame]:
    """Every Parquet table of results/tables/, timings aside."""
    frames = {}
    for path in sorted((root / "results/tables").glob("*.parquet")):
        frame = pd.read_parquet(path)
        frames[path.name] = frame.drop(columns=[c for c in frame.columns if "seconds" in c])
    return frames


def test_killed_at_any_moment_and_resumed_gives_the_same_tables(tiny_run, tmp_path):
    """The whole DAG killed with SIGKILL at seeded moments of its progress and resumed with the README's commands: the
    same tables as the uninterrupted run, no partial store left, and no job run again whose outputs were complete."""
    from conftest import TINY_CONFIG as CONFIG

    root = repository_copy(tmp_path / "killed")
    write_config(root, CONFIG)
    moments = random.Random(KILL_SEED)
    kept: dict[str, int] = {}  # outputs complete at some kill: none may be written again
    kills = 0
    for attempt in range(KILLS):
        # The README's commands after a killed run: unlock the folder, then rerun what was incomplete.
        resume = ["--rerun-incomplete"] if attempt else []
        if attempt:
            subprocess.run(
                [*SNAKEMAKE, "--configfile", "config.yaml", "--unlock"], cwd=root, check=True, capture_output=True
            )
        if killed_after(root, moments.randint(1, 6), moments.uniform(0, 2), *resume, "--omit-from", *LEFT_OUT):
            kills += 1
            complete = complete_outputs(root)
            assert all(complete.get(path) == mtime for path, mtime in kept.items()), "a complete output changed"
            kept |= complete
    assert kills == KILLS and kept, "every kill must land inside the run"

    subprocess.run([*SNAKEMAKE, "--configfile", "config.yaml", "--unlock"], cwd=root, check=True, capture_output=True)
    run_from_root(root, CONFIG, "--rerun-incomplete", "--omit-from", *LEFT_OUT)

    rewritten = [path for path, mtime in kept.items() if (root / path).stat().st_mtime_ns != mtime]
    assert not rewritten, f"outputs of finished jobs were computed again: {rewritten}"
    assert not list((root / "results").rglob("*.partial")), "a partial store was left behind"
    assert not list((root / "results").rglob("checkpoint.pt")), "a training checkpoint was left behind"
    assert not recorded_paths(root, "incomplete")
    expected = {name: frame for name, frame in table_frames(tiny_run).items() if not name.startswith("pretraining_")}
    resumed = table_frames(root)
    assert resumed.keys() == expected.keys() and len(expected) == 12
    for name, frame in expected.items():
        pd.testing.assert_frame_equal(resumed[name], frame, obj=name)
    result = run_from_root(root, CONFIG, "--dry-run", "--omit-from", *LEFT_OUT)
    assert "Nothing to be done" in result.stdout + result.stderr


def test_jobs_on_two_ranks_equal_one_rank(tiny_run, tmp_path):
    """resources.<kind>.ranks: 2 runs a retraining job on two gloo ranks (DDP, each half of every batch: the
    predictions and metrics of the same job on one rank, SGD: see tests/test_ranks.py) and head importance and
    masking by θ on two ranks (blocks of images: the outputs of the one-rank run; the baseline's evaluation
    and stores on two ranks: the streaming test and tests/test_ranks.py)."""
    from conftest import TINY_CONFIG

    root = tmp_path / "root"
    shutil.copytree(tiny_run, root, symlinks=True)
    config = copy.deepcopy(TINY_CONFIG)
    config["retrain"]["recipe"] |= {"optimizer": "sgd", "lr": 0.01}
    branch = "results/tiny/retrain/awd_dip_a0.1_b0.2/seed0"
    inference = {
        "head_importance": ["tiny/heads/val/head_importance.parquet", "tiny/heads/val/head_importance_images.parquet"],
        "theta_masking": [
            "tiny/semantics/val/theta_masking.parquet",
            "tiny/semantics/val/theta_masking_predictions.parquet",
        ],
    }
    outputs = [name for names in inference.values() for name in names]
    inference_targets = [f"results/{name}" for name in outputs]
    branches = []
    for ranks in (1, 2):
        config["resources"] = {"train": {"ranks": ranks}} | ({"inference": {"ranks": 2}} if ranks == 2 else {})
        targets, rules = [f"{branch}/metrics.json"], ["retrain_awd_dip"]
        if ranks == 2:
            targets, rules = targets + inference_targets, rules + list(inference)
        run_from_root(root, config, *targets, "--forcerun", *rules)
        metrics = json.loads((root / branch / "metrics.json").read_text())
        branches.append((metrics, pd.read_parquet(root / branch / "predictions.parquet")))
    (one, one_predictions), (two, two_predictions) = branches
    pd.testing.assert_frame_equal(two_predictions.drop(columns="p_true"), one_predictions.drop(columns="p_true"))
    np.testing.assert_allclose(two_predictions["p_true"], one_predictions["p_true"], atol=1e-5)
    assert two["top1"] == one["top1"] and two["steps"] == one["steps"] and two["eo"] == one["eo"]
    logs = sorted(path.name for path in (root / "results/logs/retrain").glob("tiny_awd_dip_a0.1_b0.2_seed0.log*"))
    assert logs == ["tiny_awd_dip_a0.1_b0.2_seed0.log", *(f"tiny_awd_dip_a0.1_b0.2_seed0.log.rank{r}" for r in (0, 1))]
    for rule in inference:
        logs = sorted(path.name for path in (root / "results/logs" / rule).glob("tiny*.log*"))
        assert any(name.endswith(".log.rank1") for name in logs), (rule, logs)
    assert "running on 2 ranks" in (root / "results/logs/head_importance/tiny_val.log").read_text()
    for name in outputs:
        one, two = tiny_run / "results" / name, root / "results" / name
        assert two.stat().st_mtime > one.stat().st_mtime, f"{name} was not recomputed"
        pd.testing.assert_frame_equal(pd.read_parquet(two), pd.read_parquet(one), check_exact=True, obj=name)


def test_mae_pretraining_and_restoration_of_both_schedules(tiny_run):
    """Wu et al. Sec. 5.2 and 2: per schedule and seed a curve of k-NN top-1 per round (the guided one's β
    stepping every round), the final k-NN and probe top-1 with intervals, the restoration errors per choice;
    the guided masks' fallback counted; two layers make no stages."""
    from conftest import TINY_CONFIG

    results = tiny_run / "results"
    seeds, rounds = TINY_CONFIG["seeds"], TINY_CONFIG["pretraining"]["recipe"]["epochs"]
    curves = pd.read_parquet(results / "tables/pretraining_curves_tiny.parquet")
    assert len(curves) == 2 * len(seeds) * (rounds + 1)  # round 0: the encoder as initialised
    guided = curves[(curves["schedule"] == "guided") & (curves["round"] > 0)]
    assert guided.groupby("seed")["beta"].apply(list).tolist() == [[0.1, 0.5, 0.5]] * len(seeds)
    assert curves.loc[curves["schedule"] == "random", "beta"].isna().all()
    assert (guided["fallback_images"] >= 0).all() and (curves.loc[curves["round"] > 0, "loss"] > 0).all()
    table = pd.read_parquet(results / "tables/pretraining_tiny.parquet").set_index("schedule")
    assert list(table.index) == ["random", "guided"] and (table["n_seeds"] == len(seeds)).all()
    for name in ("knn", "probe"):
        assert (table[f"{name}_ci_low"] <= table[f"{name}_top1"]).all()
        assert (table[f"{name}_top1"] <= table[f"{name}_ci_high"]).all()
    for schedule in ("random", "guided"):
        for seed in seeds:
            run = results / f"tiny/pretraining/{schedule}/seed{seed}"
            metrics = json.loads((run / "metrics.json").read_text())
            curve = curves[(curves["schedule"] == schedule) & (curves["seed"] == seed)]
            predictions = pd.read_parquet(run / "predictions.parquet")
            assert metrics["knn_top1"] == curve["knn_top1"].iloc[-1] == 100 * predictions["knn_correct"].mean()
            assert metrics["rounds"] == rounds and len(predictions) == 20
            assert (run / "encoder.safetensors").is_file() and (run / "decoder.safetensors").is_file()
            assert not (run / "checkpoint.pt").exists()
    threshold = 0.95 * table.loc["random", "knn_top1"]
    assert table["reach_threshold"].iloc[0] == pytest.approx(threshold)
    restoration = pd.read_parquet(results / "tiny/pretraining/restoration.parquet")
    assert len(restoration) == 2 * 3 and (restoration["n_images"] == 20).all()
    assert (restoration["mse_ci_low"] <= restoration["mse"]).all() and (
        restoration["mse"] <= restoration["mse_ci_high"]
    ).all()
    choices = restoration.set_index(["schedule", "choice"])["masked_keypoint_patches"]
    assert choices["random", "keypoint"] > choices["random", "random"] > choices["random", "non_keypoint"]
    assert pd.read_parquet(results / "tables/semantics_stages_tiny_val.parquet").empty  # 2 layers
    for name in ("pretraining_curves", "mae_restoration", "three_stages"):
        assert (results / f"figures/tiny/{name}.png").stat().st_size > 5_000, name
