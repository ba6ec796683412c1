"""Tables of the MAE pre-training (Wu et al. Sec. 5.2) and restoration (Sec. 2): per mask schedule the
final k-NN and linear-probe top-1 with intervals over seeds and images, the round at which each run
first reaches 95 % of the random schedule's final k-NN top-1, and the restoration error per schedule
and choice of masked patches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from patchinteract.report.retraining_tables import Uncertainty
from patchinteract.report.statistics import accuracy_interval, mean_interval, seed_interval

REACH_SHARE = 0.95  # of the random schedule's final k-NN top-1


def rounds_to_reach(curve: pd.DataFrame, threshold: float) -> float:
    """The first round after round 0 whose k-NN top-1 reaches ``threshold``; NaN (not reached) if none does,
    or if the curve never rises above its own start (round 0, the encoder as initialised): pre-training
    did not bring such a run there."""
    trained = curve[curve["round"] > 0]
    start = round_zero(curve)
    if not np.isnan(start) and not (trained["knn_top1"] > start).any():
        return float("nan")
    reached = trained.loc[trained["knn_top1"] >= threshold, "round"]
    return float(reached.iloc[0]) if len(reached) else float("nan")


def round_zero(curve: pd.DataFrame) -> float:
    """k-NN top-1 of the untrained encoder (round 0); NaN for a curve written before round 0 was recorded."""
    start = curve.loc[curve["round"] == 0, "knn_top1"]
    return float(start.iloc[0]) if len(start) else float("nan")


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
    seeds and images), the untrained encoder's k-NN top-1 (round 0) and the gain over it (mean and
    interval over seeds), and the round each run first reaches the threshold (mean, interval over seeds,
    and the per-seed list, "not reached" where a run never does)."""
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
        starts = np.array([round_zero(run["curve"]) for run in group])
        gains = np.array([run["knn_top1"] for run in group]) - starts
        low, high = seed_interval(gains, uncertainty.confidence, uncertainty.resamples, uncertainty.seed)
        row |= {"knn_round0": float(starts.mean()), "knn_gain": float(gains.mean())}
        row |= {"knn_gain_ci_low": low, "knn_gain_ci_high": high}
        reached = np.array([rounds_to_reach(run["curve"], threshold) for run in group])
        low, high = seed_interval(reached, uncertainty.confidence, uncertainty.resamples, uncertainty.seed)
        row |= {
            "reach_threshold": threshold,
            "rounds_to_reach": float(np.mean(reached)),
            "rounds_to_reach_ci_low": low,
            "rounds_to_reach_ci_high": high,
            "rounds_to_reach_per_seed": ",".join("not reached" if np.isnan(r) else str(int(r)) for r in reached),
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
