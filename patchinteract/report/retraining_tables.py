"""Result tables: every metrics.json as one row, each model's top-1 with its uncertainty, paired
comparisons against the ViT, and the paper's tables as views of those rows.

Each table is a pandas DataFrame written as Parquet (and Markdown for reading in a terminal).
Percentages are in percent; eo is the mean number of interactions per head per layer on the val split
(docs/results.md lists every column). A model is one (experiment, branch): the baseline, or a retrained
branch with one run per seed. Its top-1 interval and its paired comparison with the experiment's ViT
come from the runs' per-image predictions (``predictions.parquet`` beside each metrics.json), through
:mod:`patchinteract.report.statistics`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from patchinteract.paths import PREDICTIONS, TABLE_NAMES
from patchinteract.report.statistics import CONFIDENCE, RESAMPLES, accuracy_interval, excludes_zero, paired_comparison
from patchinteract.training.branch_kinds import ViTBranch

# The branch every retrained branch is compared with: its experiment's plain ViT.
REFERENCE = ViTBranch.pattern
# Columns first in every table, in this order; the rest follow alphabetically.
LEADING_COLUMNS = [
    "experiment",
    "dataset",
    "model",
    "img_size",
    "patch_size",
    "n_patches",
    "method",
    "branch",
    "alpha",
    "beta",
    "seed",
    "eo",
    "top1",
    "top5",
]
MODEL_KEYS = ["experiment", "branch"]
# Per model: top-1 over its seeds, and its paired difference to the experiment's ViT (points).
TOP1_COLUMNS = ["top1_mean", "top1_std", "n_seeds", "top1_ci_low", "top1_ci_high"]
DIFF_COLUMNS = ["diff", "diff_ci_low", "diff_ci_high", "p_value", "test"]


@dataclass(frozen=True)
class Uncertainty:
    """How the intervals and tests are computed (config tables.confidence, tables.bootstrap_resamples, seed)."""

    confidence: float = CONFIDENCE
    resamples: int = RESAMPLES
    seed: int = 0

    @classmethod
    def from_params(cls, params) -> Uncertainty:
        """From a job's params (rules/common.smk UNCERTAINTY: confidence, resamples, seed)."""
        return cls(params.confidence, params.resamples, params.seed)


def collect_runs(metrics_paths: list[Path | str]) -> pd.DataFrame:
    """One row per run (the baseline, or one seed of a retrained branch): every metrics key as a column,
    plus its file."""
    rows = [json.loads(Path(p).read_text()) | {"metrics_file": str(p)} for p in metrics_paths]
    runs = pd.DataFrame(rows)
    if "branch" in runs:
        runs["branch"] = runs["branch"].fillna(runs["method"])
    leading = [c for c in LEADING_COLUMNS if c in runs]
    runs = runs[leading + sorted(set(runs.columns) - set(leading))]
    return runs.sort_values(["experiment", "method", "branch", "seed"], kind="stable").reset_index(drop=True)


def run_correctness(runs: pd.DataFrame) -> list[np.ndarray]:
    """Per run, its per-image correctness ordered by image id (from the predictions beside its metrics),
    checked to match its metrics' top-1 and to be of the same images as every run of its experiment."""
    correct, images = [], {}
    for run in runs.itertuples(index=False):
        path = Path(run.metrics_file).with_name(PREDICTIONS)
        if not path.is_file():
            raise FileNotFoundError(f"{run.metrics_file} has no {PREDICTIONS} beside it: rerun its evaluation")
        predictions = pd.read_parquet(path, columns=["image_id", "correct"]).sort_values("image_id")
        ids = predictions["image_id"].to_numpy()
        if not np.array_equal(images.setdefault(run.experiment, ids), ids):
            raise ValueError(f"{path} is not of the same val images as the other runs of '{run.experiment}'")
        values = predictions["correct"].to_numpy(bool)
        if not np.isclose(100.0 * values.mean(), run.top1, rtol=0, atol=1e-9):
            raise ValueError(f"{path} gives top-1 {100 * values.mean():.4f}, its metrics.json {run.top1:.4f}")
        correct.append(values)
    return correct


def _seed_matrix(rows: pd.DataFrame, correct: list[np.ndarray], seeds) -> np.ndarray:
    """(seeds, images) correctness of a model's runs of the given seeds, in that order."""
    by_seed = dict(zip(rows["seed"], rows.index, strict=True))
    return np.stack([correct[by_seed[seed]] for seed in seeds])


def model_statistics(runs: pd.DataFrame, correct: list[np.ndarray], uncertainty: Uncertainty) -> pd.DataFrame:
    """One row per model (experiment, branch): its first run's descriptive columns, eo (and window_iou)
    averaged over seeds, and top1_mean, top1_std (over seeds; NaN for one), n_seeds, seeds and the
    interval top1_ci_low/high (bootstrap over images, and over seeds when there are several)."""
    rows = []
    for _key, group in runs.groupby(MODEL_KEYS, sort=False):
        seeds = sorted(group["seed"])
        low, high = accuracy_interval(
            _seed_matrix(group, correct, seeds), uncertainty.confidence, uncertainty.resamples, uncertainty.seed
        )
        averaged = {c: group[c].mean() for c in ("eo", "window_iou") if c in group}
        rows.append(
            group.iloc[0].to_dict()
            | averaged
            | {
                "top1_mean": group["top1"].mean(),
                "top1_std": group["top1"].std(ddof=1),
                "n_seeds": len(seeds),
                "seeds": ",".join(map(str, seeds)),
                "top1_ci_low": low,
                "top1_ci_high": high,
            }
        )
    models = pd.DataFrame(rows).drop(columns=["top1", "top5", "seed", "metrics_file"], errors="ignore")
    return models.reset_index(drop=True)


def comparisons(runs: pd.DataFrame, correct: list[np.ndarray], uncertainty: Uncertainty) -> pd.DataFrame:
    """Each retrained branch against the ViT of its experiment, on the same val images: one row per
    (experiment, branch, seed set): every seed alone when there are several, and all seeds together.

    Runs pair by seed (seed k of the branch with seed k of the ViT). Columns: experiment, branch, method,
    alpha, beta, reference, seeds, n_seeds, n_images, top1_mean, reference_top1_mean, then
    :func:`patchinteract.report.statistics.paired_comparison`'s diff, diff_ci_low, diff_ci_high, p_value,
    test, and significant (the interval excludes 0).
    """
    rows = []
    retrained = runs[runs["method"] != "baseline"]
    for experiment, group in retrained.groupby("experiment", sort=False):
        reference = group[group["branch"] == REFERENCE]
        if reference.empty:
            continue
        for branch, model in group[group["branch"] != REFERENCE].groupby("branch", sort=False):
            shared = sorted(set(model["seed"]) & set(reference["seed"]))
            seed_sets = [[seed] for seed in shared] if len(shared) > 1 else []
            for seeds in [*seed_sets, shared] if shared else []:
                ours = _seed_matrix(model, correct, seeds)
                theirs = _seed_matrix(reference, correct, seeds)
                test = paired_comparison(ours, theirs, uncertainty.confidence, uncertainty.resamples, uncertainty.seed)
                first = model.iloc[0]
                rows.append(
                    {
                        "experiment": experiment,
                        "branch": branch,
                        "method": first["method"],
                        "alpha": first["alpha"],
                        "beta": first["beta"],
                        "reference": REFERENCE,
                        "seeds": ",".join(map(str, seeds)),
                        "n_seeds": len(seeds),
                        "n_images": ours.shape[1],
                        "top1_mean": 100.0 * ours.mean(),
                        "reference_top1_mean": 100.0 * theirs.mean(),
                    }
                    | test
                    | {"significant": bool(excludes_zero(test["diff_ci_low"], test["diff_ci_high"]))}
                )
    columns = [
        "experiment",
        "branch",
        "method",
        "alpha",
        "beta",
        "reference",
        "seeds",
        "n_seeds",
        "n_images",
        "top1_mean",
        "reference_top1_mean",
        *DIFF_COLUMNS,
        "significant",
    ]
    return pd.DataFrame(rows, columns=columns)


def models_with_comparisons(models: pd.DataFrame, compared: pd.DataFrame) -> pd.DataFrame:
    """The models with the comparison of all their seeds against the ViT (NaN for the ViT and baseline)."""
    keys = [*MODEL_KEYS, "seeds"]
    return models.merge(compared[[*keys, *DIFF_COLUMNS]], on=keys, how="left")


def table1_awd(models: pd.DataFrame) -> pd.DataFrame:
    """Table I: AWD per α, with the retrained ViT as the α = 1 row (all windows cover the grid)."""
    awd = models[models["method"] == "awd"]
    vit = models[(models["method"] == "vit") & models["experiment"].isin(awd["experiment"])].assign(alpha=1.0)
    columns = ["experiment", "model", "img_size", "patch_size", "method", "alpha", "eo", *TOP1_COLUMNS, *DIFF_COLUMNS]
    table = pd.concat([vit, awd])[columns]
    return table.sort_values(["experiment", "alpha"], ascending=[True, False], kind="stable").reset_index(drop=True)


def table2_awd_dip(models: pd.DataFrame) -> pd.DataFrame:
    """Table II: AWD + DIP per (α, β), with AWD at the same α as the β = 0 row."""
    dip = models[models["method"] == "awd_dip"]
    dip_alphas = dip[["experiment", "alpha"]].drop_duplicates()
    awd = models[models["method"] == "awd"].merge(dip_alphas, on=["experiment", "alpha"])
    table = pd.concat([awd.assign(beta=0.0), dip])
    columns = [
        "experiment",
        "model",
        "img_size",
        "patch_size",
        "method",
        "alpha",
        "beta",
        "eo",
        *TOP1_COLUMNS,
        *DIFF_COLUMNS,
    ]
    return table[columns].sort_values(["experiment", "alpha", "beta"], kind="stable").reset_index(drop=True)


def table3_winft(models: pd.DataFrame) -> pd.DataFrame:
    """Table III: ViT vs WinFT per experiment (model, resolution, patch size), top-1 and E_O side by side,
    and WinFT − ViT with its interval and paired test."""
    keys = ["experiment", "dataset", "model", "img_size", "patch_size"]
    shown = ["top1_mean", "top1_std", "top1_ci_low", "top1_ci_high", "eo"]
    vit = models[models["method"] == "vit"][[*keys, *shown]].rename(columns=lambda c: c if c in keys else f"vit_{c}")
    winft_columns = [*shown, "window_iou", "n_seeds", *DIFF_COLUMNS]
    winft = models[models["method"] == "winft"][[*keys, *winft_columns]]
    winft = winft.rename(columns=lambda c: f"winft_{c}" if c in [*shown, "window_iou"] else c)
    table = vit.merge(winft, on=keys, how="inner")
    return table.sort_values(["patch_size", "img_size"], ascending=[False, True], kind="stable").reset_index(drop=True)


def is_transfer_dataset(name: str, transfer_datasets: list[str] | None) -> bool:
    """Datasets of Table IV: those listed, or by default every one whose name does not start with 'imagenet'."""
    if transfer_datasets is None:
        return not name.lower().startswith("imagenet")
    return name in transfer_datasets


def table4_transfer(models: pd.DataFrame, transfer_datasets: list[str] | None = None) -> pd.DataFrame:
    """Table IV: ViT vs WinFT on the transfer datasets (CUB in the paper), Table III's columns."""
    table = table3_winft(models)
    keep = [is_transfer_dataset(name, transfer_datasets) for name in table["dataset"]]
    return table[keep].sort_values(["dataset", "experiment"], kind="stable").reset_index(drop=True)


def interval_cells(table: pd.DataFrame) -> pd.DataFrame:
    """The table for reading: each value with an interval (``X_mean`` or ``X`` beside ``X_ci_low``,
    ``X_ci_high``) as one ``value ± half-width`` column named X; a difference whose interval excludes 0
    gets a trailing ``*``. The std and bound columns stay in the Parquet table only."""
    shown = table.copy()
    for low in [c for c in table.columns if c.endswith("_ci_low")]:
        prefix = low.removesuffix("_ci_low")
        value = f"{prefix}_mean" if f"{prefix}_mean" in table else prefix
        lows, highs, values = table[low], table[f"{prefix}_ci_high"], table[value]
        marked = prefix.endswith("diff")

        def cell(v, lo, hi, marked=marked):
            if pd.isna(v):
                return ""
            mark = " *" if marked and excludes_zero(lo, hi) else ""
            return f"{v:.2f} ± {(hi - lo) / 2:.2f}{mark}"

        shown[value] = [cell(v, lo, hi) for v, lo, hi in zip(values, lows, highs, strict=True)]
        shown = shown.drop(columns=[low, f"{prefix}_ci_high", f"{prefix}_std"], errors="ignore")
        shown = shown.rename(columns={value: prefix})
    return shown


def to_markdown(table: pd.DataFrame) -> str:
    """A pipe table for terminals (intervals as ``value ± half-width``, floats with 2 decimals, p-values
    with 3 significant digits); no extra dependency."""

    def cell(column, value):
        if isinstance(value, float):
            if pd.isna(value):
                return ""
            return f"{value:.3g}" if column == "p_value" else f"{value:.2f}"
        return "" if value is None or value is pd.NA else str(value)

    shown = interval_cells(table)
    header = "| " + " | ".join(shown.columns) + " |"
    rule = "| " + " | ".join("---" for _ in shown.columns) + " |"
    body = [
        "| " + " | ".join(cell(c, v) for c, v in zip(shown.columns, row, strict=True)) + " |"
        for row in shown.itertuples(index=False)
    ]
    return "\n".join([header, rule, *body]) + "\n"


def write_tables(
    metrics_paths: list[Path | str],
    out_dir: Path | str,
    transfer_datasets: list[str] | None = None,
    uncertainty: Uncertainty = Uncertainty(),
) -> dict[str, pd.DataFrame]:
    """runs, Tables I-IV and comparisons as <name>.parquet and <name>.md under ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = collect_runs(metrics_paths)
    correct = run_correctness(runs)
    compared = comparisons(runs, correct, uncertainty)
    models = models_with_comparisons(model_statistics(runs, correct, uncertainty), compared)
    builders = {
        "runs": lambda: runs,
        "table1_awd": lambda: table1_awd(models),
        "table2_awd_dip": lambda: table2_awd_dip(models),
        "table3_winft": lambda: table3_winft(models),
        "table4_transfer": lambda: table4_transfer(models, transfer_datasets),
        "comparisons": lambda: compared,
    }
    tables = {name: builders[name]() for name in TABLE_NAMES}  # the names the rule declares
    for name, table in tables.items():
        table.to_parquet(out_dir / f"{name}.parquet", index=False)
        (out_dir / f"{name}.md").write_text(to_markdown(table))
    return tables
