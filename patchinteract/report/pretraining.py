"""Tables of the MAE pre-training (Wu et al. Sec. 5.2) and restoration (Sec. 2): per mask schedule the
final k-NN and linear-probe top-1 with intervals over seeds and images, the round at which each run
first reaches 95 % of the random schedule's final k-NN top-1, and the restoration error per schedule
and choice of masked patches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from patchinteract.report.statistics import accuracy_interval, mean_interval, seed_interval
from patchinteract.report.tables import Uncertainty

REACH_SHARE = 0.95  # of the random schedule's final k-NN top-1


def rounds_to_reach(curve: pd.DataFrame, threshold: float) -> float:
    """The first round whose k-NN top-1 reaches ``threshold`` (NaN if none does)."""
    reached = curve.loc[curve["knn_top1"] >= threshold, "round"]
    return float(reached.iloc[0]) if len(reached) else float("nan")


def pretraining_runs(metrics_paths: list[str | Path], curve_paths: list[str | Path]) -> list[dict]:
    """Per run: its metrics, curve and per-image predictions (beside its metrics)."""
    runs = []
    for metrics, curve in zip(metrics_paths, curve_paths, strict=True):
        record = json.loads(Path(metrics).read_text())
        predictions = pd.read_parquet(Path(metrics).with_name("predictions.parquet")).sort_values("image_id")
        runs.append(record | {"curve": pd.read_parquet(curve), "predictions": predictions})
    return runs


def reach_threshold(runs: list[dict]) -> float:
    """95 % of the random schedule's final k-NN top-1 (mean over its seeds); NaN without random runs."""
    finals = [run["knn_top1"] for run in runs if run["schedule"] == "random"]
    return REACH_SHARE * float(np.mean(finals)) if finals else float("nan")


def pretraining_table(runs: list[dict], uncertainty: Uncertainty) -> pd.DataFrame:
    """One row per schedule: seeds, rounds, final k-NN and probe top-1 (mean over seeds, interval over
    seeds and images), and the round each run first reaches the threshold (mean, interval over seeds,
    and the per-seed list)."""
    threshold = reach_threshold(runs)
    rows = []
    for schedule in dict.fromkeys(run["schedule"] for run in runs):
        group = sorted((run for run in runs if run["schedule"] == schedule), key=lambda run: run["seed"])
        row = {"schedule": schedule, "n_seeds": len(group), "seeds": ",".join(str(run["seed"]) for run in group)}
        row["rounds"] = int(group[0]["rounds"])
        for name in ("knn", "probe"):
            correct = np.stack([run["predictions"][f"{name}_correct"].to_numpy(bool) for run in group])
            low, high = accuracy_interval(correct, uncertainty.confidence, uncertainty.resamples, uncertainty.seed)
            row |= {f"{name}_top1": 100.0 * correct.mean(), f"{name}_ci_low": low, f"{name}_ci_high": high}
        reached = np.array([rounds_to_reach(run["curve"], threshold) for run in group])
        low, high = seed_interval(reached, uncertainty.confidence, uncertainty.resamples, uncertainty.seed)
        row |= {
            "reach_threshold": threshold,
            "rounds_to_reach": float(np.mean(reached)),
            "rounds_to_reach_ci_low": low,
            "rounds_to_reach_ci_high": high,
            "rounds_to_reach_per_seed": ",".join("never" if np.isnan(r) else str(int(r)) for r in reached),
        }
        rows.append(row)
    return pd.DataFrame(rows)


def curves_table(runs: list[dict]) -> pd.DataFrame:
    """Every run's curve (schedule, seed, round, β, k-NN top-1, loss, fallback counts), one table."""
    return pd.concat([run["curve"] for run in runs], ignore_index=True)


def restoration_summary(images: pd.DataFrame, uncertainty: Uncertainty) -> pd.DataFrame:
    """One row per schedule and choice: the mean reconstruction error over seeds and images with its
    interval, and the mean number of keypoint patches among the masked ones."""
    rows = []
    for (schedule, choice), group in images.groupby(["schedule", "choice"], sort=False):
        errors = np.stack([part.sort_values("image_id")["mse"].to_numpy() for _, part in group.groupby("seed")])
        low, high = mean_interval(errors, uncertainty.confidence, uncertainty.resamples, uncertainty.seed)
        rows.append(
            {
                "schedule": schedule,
                "choice": choice,
                "n_seeds": len(errors),
                "n_images": errors.shape[1],
                "mse": float(errors.mean()),
                "mse_ci_low": low,
                "mse_ci_high": high,
                "masked_keypoint_patches": float(group["masked_keypoint_patches"].mean()),
            }
        )
    return pd.DataFrame(rows)
