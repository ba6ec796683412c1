"""The result tables from hand-made metrics rows: which runs each table holds, and in which order."""

import json

import pandas as pd

from patchinteract.layout import TABLE_NAMES
from patchinteract.report.tables import (
    collect_runs,
    table1_awd,
    table2_awd_dip,
    table3_winft,
    table4_transfer,
    write_tables,
)

MODEL = {"model": "VisionTransformer", "img_size": 16, "patch_size": 4, "n_patches": 16}


def run(experiment, dataset, method, branch=None, alpha=None, beta=None, eo=256.0, top1=50.0, **extra):
    return {"experiment": experiment, "dataset": dataset, "method": method, "branch": branch, "alpha": alpha,
            "beta": beta, "eo": eo, "top1": top1, **MODEL, **extra}  # fmt: skip


ROWS = [
    run("p4", "digits", "baseline"),
    run("p4", "digits", "vit", "vit", top1=90.0),
    run("p4", "digits", "awd", "awd_a0.5", 0.5, eo=120.0, top1=88.0),
    run("p4", "digits", "awd", "awd_a0.1", 0.1, eo=40.0, top1=85.0),
    run("p4", "digits", "awd_dip", "awd_dip_a0.1_b0.2", 0.1, 0.2, eo=30.0, top1=84.0),
    run("p4", "digits", "winft", "winft", 0.1, 0.1, eo=100.0, top1=91.0, window_iou=0.5),
    run("cub", "cub200", "vit", "vit", top1=70.0),
    run("cub", "cub200", "winft", "winft", 0.1, 0.1, eo=90.0, top1=72.0, window_iou=0.4),
]


def runs_from(tmp_path, rows=ROWS):
    paths = []
    for index, row in enumerate(rows):
        path = tmp_path / f"m{index}.json"
        path.write_text(json.dumps(row))
        paths.append(path)
    return paths


def test_runs_hold_every_metrics_file_with_the_leading_columns_first(tmp_path):
    runs = collect_runs(runs_from(tmp_path))
    assert len(runs) == len(ROWS) and list(runs.columns[:4]) == ["experiment", "dataset", "model", "img_size"]
    assert runs.loc[runs["method"] == "baseline", "branch"].tolist() == ["baseline"]  # no branch: the method


def test_table1_has_vit_as_alpha_one_then_alpha_descending():
    table = table1_awd(pd.DataFrame(ROWS))
    assert table["alpha"].tolist() == [1.0, 0.5, 0.1] and table["method"].tolist() == ["vit", "awd", "awd"]


def test_table2_has_awd_at_the_dip_alpha_as_beta_zero():
    table = table2_awd_dip(pd.DataFrame(ROWS))
    assert table[["method", "alpha", "beta"]].values.tolist() == [["awd", 0.1, 0.0], ["awd_dip", 0.1, 0.2]]


def test_table3_pairs_vit_and_winft_and_table4_keeps_the_transfer_datasets():
    table3 = table3_winft(pd.DataFrame(ROWS))
    assert set(table3["experiment"]) == {"p4", "cub"}
    row = table3.set_index("experiment").loc["p4"]
    assert (row["vit_top1"], row["winft_top1"], row["winft_eo"], row["winft_window_iou"]) == (90.0, 91.0, 100.0, 0.5)
    assert table4_transfer(pd.DataFrame(ROWS))["dataset"].tolist() == ["cub200", "digits"]  # default: not imagenet*
    assert table4_transfer(pd.DataFrame(ROWS), ["digits"])["dataset"].tolist() == ["digits"]


def test_write_tables_writes_every_declared_table(tmp_path):
    tables = write_tables(runs_from(tmp_path), tmp_path / "tables")
    assert list(tables) == list(TABLE_NAMES)
    for name in TABLE_NAMES:
        assert pd.read_parquet(tmp_path / "tables" / f"{name}.parquet").shape == tables[name].shape
        assert (tmp_path / "tables" / f"{name}.md").read_text().startswith("| ")
