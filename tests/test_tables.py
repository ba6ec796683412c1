"""The result tables from hand-made runs (metrics rows and their per-image predictions): which models each
table holds and in which order, the aggregation over seeds, the paired comparisons and the Markdown cells."""

import json

import numpy as np
import pandas as pd
import pytest

from patchinteract.paths import PREDICTIONS, TABLE_NAMES
from patchinteract.report.retraining_tables import (
    Uncertainty,
    collect_runs,
    comparisons,
    model_statistics,
    models_with_comparisons,
    run_correctness,
    table1_awd,
    table2_awd_dip,
    table3_winft,
    table4_transfer,
    to_markdown,
    write_tables,
)
from patchinteract.report.statistics import mcnemar_exact

MODEL = {"model": "VisionTransformer", "img_size": 16, "patch_size": 4, "n_patches": 16}
IMAGES = 200  # top-1 in steps of 0.5 %: the first top1 * 2 images are right


def run(experiment, dataset, method, branch=None, alpha=None, beta=None, eo=256.0, top1=50.0, seed=0, **extra):
    return {
        "experiment": experiment,
        "dataset": dataset,
        "method": method,
        "branch": branch,
        "alpha": alpha,
        "beta": beta,
        "eo": eo,
        "top1": top1,
        "seed": seed,
        **MODEL,
        **extra,
    }


ROWS = [
    run("p4", "digits", "baseline"),
    run("p4", "digits", "vit", "vit", top1=90.0),
    run("p4", "digits", "awd", "awd_a0.5", 0.5, eo=120.0, top1=89.5),
    run("p4", "digits", "awd", "awd_a0.1", 0.1, eo=40.0, top1=85.0),
    run("p4", "digits", "awd_dip", "awd_dip_a0.1_b0.2", 0.1, 0.2, eo=30.0, top1=84.0),
    run("p4", "digits", "winft", "winft", 0.1, 0.1, eo=100.0, top1=91.0, window_iou=0.5),
    run("cub", "cub200", "vit", "vit", top1=70.0),
    run("cub", "cub200", "winft", "winft", 0.1, 0.1, eo=90.0, top1=72.0, window_iou=0.4),
]


def correctness(top1: float) -> np.ndarray:
    return np.arange(IMAGES) < round(top1 * IMAGES / 100)


def runs_from(tmp_path, rows=ROWS, correct=None):
    """Each row as <folder>/metrics.json with its predictions beside it (``correct``: per-row override)."""
    paths = []
    for index, row in enumerate(rows):
        folder = tmp_path / f"run{index}"
        folder.mkdir(parents=True)
        right = correctness(row["top1"]) if correct is None else correct[index]
        labels = np.arange(IMAGES) % 10
        pd.DataFrame(
            {
                "image_id": np.arange(IMAGES)[::-1],
                "label": labels[::-1],
                "prediction": np.where(right, labels, 0)[::-1],
                "correct": right[::-1],
                "p_true": np.where(right, 0.9, 0.05)[::-1],
                "top5": [[0, 1, 2, 3, 4]] * IMAGES,
            }
        ).to_parquet(folder / PREDICTIONS)
        (folder / "metrics.json").write_text(json.dumps(row))
        paths.append(folder / "metrics.json")
    return paths


FEW_RESAMPLES = Uncertainty(resamples=500)


def models_of(tmp_path, rows=ROWS, uncertainty=FEW_RESAMPLES):
    runs = collect_runs(runs_from(tmp_path, rows))
    correct = run_correctness(runs)
    return models_with_comparisons(
        model_statistics(runs, correct, uncertainty), comparisons(runs, correct, uncertainty)
    )


def test_runs_hold_every_metrics_file_with_the_leading_columns_first(tmp_path):
    runs = collect_runs(runs_from(tmp_path))
    assert len(runs) == len(ROWS) and list(runs.columns[:4]) == ["experiment", "dataset", "model", "img_size"]
    assert runs.loc[runs["method"] == "baseline", "branch"].tolist() == ["baseline"]  # no branch: the method


def test_table1_has_vit_as_alpha_one_then_alpha_descending(tmp_path):
    table = table1_awd(models_of(tmp_path))
    assert table["alpha"].tolist() == [1.0, 0.5, 0.1] and table["method"].tolist() == ["vit", "awd", "awd"]
    assert table["top1_mean"].tolist() == [90.0, 89.5, 85.0] and table["n_seeds"].tolist() == [1, 1, 1]
    # the ViT row has no difference; AWD α = 0.1 is right on a subset of the ViT's images: 10 discordant pairs
    assert table["diff"].isna().tolist() == [True, False, False]
    assert table["diff"].iloc[2] == pytest.approx(-5.0)
    assert table["p_value"].iloc[2] == pytest.approx(2 / 2**10) and table["test"].iloc[2] == "mcnemar_exact"
    assert table["diff_ci_high"].iloc[2] < 0 <= table["diff_ci_high"].iloc[1]  # α = 0.5: one pair, not significant
    assert (table["top1_ci_low"] < table["top1_mean"]).all() and (table["top1_mean"] < table["top1_ci_high"]).all()


def test_table2_has_awd_at_the_dip_alpha_as_beta_zero(tmp_path):
    table = table2_awd_dip(models_of(tmp_path))
    assert table[["method", "alpha", "beta"]].values.tolist() == [["awd", 0.1, 0.0], ["awd_dip", 0.1, 0.2]]


def test_table3_pairs_vit_and_winft_and_table4_keeps_the_transfer_datasets(tmp_path):
    models = models_of(tmp_path)
    table3 = table3_winft(models)
    assert set(table3["experiment"]) == {"p4", "cub"}
    row = table3.set_index("experiment").loc["p4"]
    assert (row["vit_top1_mean"], row["winft_top1_mean"], row["winft_eo"], row["winft_window_iou"]) == (
        90.0,
        91.0,
        100.0,
        0.5,
    )
    assert row["diff"] == pytest.approx(1.0)
    assert table4_transfer(models)["dataset"].tolist() == ["cub200", "digits"]  # default: not imagenet*
    assert table4_transfer(models, ["digits"])["dataset"].tolist() == ["digits"]


def test_seeds_are_aggregated_and_compared_pairwise(tmp_path):
    """Two seeds per branch: the mean is that of the metrics files, each seed is compared alone (McNemar) and
    both together (the paired bootstrap over seeds and images)."""
    rows = [run("p4", "digits", "vit", "vit", top1=t, seed=s) for s, t in ((0, 90.0), (1, 88.0))]
    rows += [run("p4", "digits", "awd", "awd_a0.1", 0.1, eo=40.0, top1=t, seed=s) for s, t in ((0, 80.0), (1, 81.0))]
    runs = collect_runs(runs_from(tmp_path, rows))
    correct = run_correctness(runs)
    uncertainty = Uncertainty(resamples=500, seed=3)
    models = model_statistics(runs, correct, uncertainty).set_index("branch")
    assert models.loc["vit", "top1_mean"] == 89.0 and models.loc["awd_a0.1", "top1_mean"] == 80.5
    assert models.loc["vit", "top1_std"] == pytest.approx(np.std([90.0, 88.0], ddof=1))
    assert models.loc["vit", "n_seeds"] == 2 and models.loc["vit", "seeds"] == "0,1"
    compared = comparisons(runs, correct, uncertainty).set_index("seeds")
    assert list(compared.index) == ["0", "1", "0,1"]
    assert compared.loc["0", "test"] == "mcnemar_exact"
    assert compared.loc["0", "p_value"] == mcnemar_exact(correctness(80.0), correctness(90.0))
    pooled = compared.loc["0,1"]
    assert pooled["test"] == "paired_bootstrap" and pooled["diff"] == pytest.approx(80.5 - 89.0)
    assert pooled["diff_ci_high"] < 0 and pooled["p_value"] < 0.05 and pooled["significant"]
    again = comparisons(runs, correct, uncertainty).set_index("seeds")
    pd.testing.assert_frame_equal(compared, again)  # seeded: the same tables


def test_markdown_cells_show_intervals_and_mark_differences(tmp_path):
    table = table1_awd(models_of(tmp_path))
    lines = to_markdown(table).splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert "top1" in header and "diff" in header and "top1_ci_low" not in header and "top1_std" not in header
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    top1, diff = header.index("top1"), header.index("diff")
    low, high = table.loc[0, "top1_ci_low"], table.loc[0, "top1_ci_high"]
    assert cells[0][top1] == f"90.00 ± {(high - low) / 2:.2f}" and cells[0][diff] == ""
    assert cells[2][diff].endswith(" *") and not cells[1][diff].endswith("*")


def test_predictions_must_match_their_metrics_and_images(tmp_path):
    rows = [run("p4", "digits", "vit", "vit", top1=90.0), run("p4", "digits", "awd", "awd_a0.1", 0.1, top1=85.0)]
    wrong = runs_from(tmp_path / "wrong", rows, correct=[correctness(90.0), correctness(80.0)])
    with pytest.raises(ValueError, match="its metrics.json"):
        run_correctness(collect_runs(wrong))
    missing = runs_from(tmp_path / "missing", rows)
    (missing[1].parent / PREDICTIONS).unlink()
    with pytest.raises(FileNotFoundError, match=PREDICTIONS):
        run_correctness(collect_runs(missing))
    other = runs_from(tmp_path / "other", rows)
    predictions = pd.read_parquet(other[1].parent / PREDICTIONS)
    predictions.assign(image_id=predictions["image_id"] + 1).to_parquet(other[1].parent / PREDICTIONS)
    with pytest.raises(ValueError, match="not of the same val images"):
        run_correctness(collect_runs(other))


def test_write_tables_writes_every_declared_table(tmp_path):
    tables = write_tables(runs_from(tmp_path), tmp_path / "tables", uncertainty=Uncertainty(resamples=200))
    assert list(tables) == list(TABLE_NAMES)
    for name in TABLE_NAMES:
        assert pd.read_parquet(tmp_path / "tables" / f"{name}.parquet").shape == tables[name].shape
        assert (tmp_path / "tables" / f"{name}.md").read_text().startswith("| ")
    assert tables["comparisons"]["branch"].tolist() == ["winft", "awd_a0.1", "awd_a0.5", "awd_dip_a0.1_b0.2", "winft"]
