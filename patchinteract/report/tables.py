"""Result tables: every metrics.json as one row, and the paper's tables as views of those rows.

Each table is a pandas DataFrame written as Parquet (and Markdown for reading in
a terminal). Percentages are in percent; eo is the mean number of interactions
per head per layer on the val split (see the README for every column).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from patchinteract.layout import TABLE_NAMES

# Columns first in every table, in this order; the rest follow alphabetically.
LEADING_COLUMNS = [
    "experiment", "dataset", "model", "img_size", "patch_size", "n_patches", "method", "branch",
    "alpha", "beta", "eo", "top1", "top5",
]  # fmt: skip


def collect_runs(metrics_paths: list[Path | str]) -> pd.DataFrame:
    """One row per model (baseline or retrained branch): every metrics key as a column, plus its file."""
    rows = [json.loads(Path(p).read_text()) | {"metrics_file": str(p)} for p in metrics_paths]
    runs = pd.DataFrame(rows)
    if "branch" in runs:
        runs["branch"] = runs["branch"].fillna(runs["method"])
    leading = [c for c in LEADING_COLUMNS if c in runs]
    runs = runs[leading + sorted(set(runs.columns) - set(leading))]
    return runs.sort_values(["experiment", "method", "branch"], kind="stable").reset_index(drop=True)


def table1_awd(runs: pd.DataFrame) -> pd.DataFrame:
    """Table I: AWD per α, with the retrained ViT as the α = 1 row (all windows cover the grid)."""
    awd = runs[runs["method"] == "awd"]
    vit = runs[(runs["method"] == "vit") & runs["experiment"].isin(awd["experiment"])].assign(alpha=1.0)
    table = pd.concat([vit, awd])[["experiment", "model", "img_size", "patch_size", "method", "alpha", "eo", "top1"]]
    return table.sort_values(["experiment", "alpha"], ascending=[True, False], kind="stable").reset_index(drop=True)


def table2_awd_dip(runs: pd.DataFrame) -> pd.DataFrame:
    """Table II: AWD + DIP per (α, β), with AWD at the same α as the β = 0 row."""
    dip = runs[runs["method"] == "awd_dip"]
    dip_alphas = dip[["experiment", "alpha"]].drop_duplicates()
    awd = runs[runs["method"] == "awd"].merge(dip_alphas, on=["experiment", "alpha"])
    table = pd.concat([awd.assign(beta=0.0), dip])
    columns = ["experiment", "model", "img_size", "patch_size", "method", "alpha", "beta", "eo", "top1"]
    return table[columns].sort_values(["experiment", "alpha", "beta"], kind="stable").reset_index(drop=True)


def table3_winft(runs: pd.DataFrame) -> pd.DataFrame:
    """Table III: ViT vs WinFT per experiment (model, resolution, patch size), top-1 and E_O side by side."""
    keys = ["experiment", "dataset", "model", "img_size", "patch_size"]
    vit = runs[runs["method"] == "vit"][[*keys, "top1", "eo"]].rename(columns={"top1": "vit_top1", "eo": "vit_eo"})
    winft_columns = {"top1": "winft_top1", "eo": "winft_eo", "window_iou": "winft_window_iou"}
    winft = runs[runs["method"] == "winft"][[*keys, *winft_columns]].rename(columns=winft_columns)
    table = vit.merge(winft, on=keys, how="inner")
    return table.sort_values(["patch_size", "img_size"], ascending=[False, True], kind="stable").reset_index(drop=True)


def is_transfer_dataset(name: str, transfer_datasets: list[str] | None) -> bool:
    """Datasets of Table IV: those listed, or by default every one whose name does not start with 'imagenet'."""
    if transfer_datasets is None:
        return not name.lower().startswith("imagenet")
    return name in transfer_datasets


def table4_transfer(runs: pd.DataFrame, transfer_datasets: list[str] | None = None) -> pd.DataFrame:
    """Table IV: ViT vs WinFT on the transfer datasets (CUB in the paper), Table III's columns."""
    table = table3_winft(runs)
    keep = [is_transfer_dataset(name, transfer_datasets) for name in table["dataset"]]
    return table[keep].sort_values(["dataset", "experiment"], kind="stable").reset_index(drop=True)


def to_markdown(table: pd.DataFrame) -> str:
    """A pipe table for terminals (floats with 2 decimals); no extra dependency."""

    def cell(value):
        if isinstance(value, float):
            return "" if pd.isna(value) else f"{value:.2f}"
        return str(value)

    header = "| " + " | ".join(table.columns) + " |"
    rule = "| " + " | ".join("---" for _ in table.columns) + " |"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def write_tables(
    metrics_paths: list[Path | str], out_dir: Path | str, transfer_datasets: list[str] | None = None
) -> dict[str, pd.DataFrame]:
    """runs and Tables I-IV as <name>.parquet and <name>.md under ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = collect_runs(metrics_paths)
    builders = {
        "runs": lambda: runs,
        "table1_awd": lambda: table1_awd(runs),
        "table2_awd_dip": lambda: table2_awd_dip(runs),
        "table3_winft": lambda: table3_winft(runs),
        "table4_transfer": lambda: table4_transfer(runs, transfer_datasets),
    }
    tables = {name: builders[name]() for name in TABLE_NAMES}  # the names the rule declares
    for name, table in tables.items():
        table.to_parquet(out_dir / f"{name}.parquet", index=False)
        (out_dir / f"{name}.md").write_text(to_markdown(table))
    return tables
