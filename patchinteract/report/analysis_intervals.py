"""How sure the companion analyses are, with the statistics of the retraining tables
(:mod:`patchinteract.report.statistics`): masking by θ (Wu et al. Sec. 5.1, Fig. 8) per point and against
the random control, head importance per head and its ranking (Li et al. Fig. 7), and θ_KK − θ_NK per
layer (Wu et al. Fig. 5). Every interval is a seeded percentile bootstrap over the images (or McNemar's
exact test where two classifiers are paired on the same images), so the same inputs give the same tables.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from patchinteract.analyses.heads.head_tables import IMPORTANCE_COLUMNS, importance_vectors
from patchinteract.report.retraining_tables import Uncertainty
from patchinteract.report.statistics import (
    accuracy_interval,
    bootstrap_pvalue,
    column_ranks,
    mean_replicates,
    paired_comparison,
    rank_interval,
    replicate_interval,
)

THETA_ORDERS, CONTROL = ("top", "bottom"), "random"
# Rank 1 is the most important head: the largest drop of the true class's probability, divergence or
# distance, and the smallest probability left with the head pruned.
LOWER_IS_MORE_IMPORTANT = {"pruned_prob"}


def _correct_by_image(rows: pd.DataFrame) -> np.ndarray:
    return rows.sort_values("image_id")["correct"].to_numpy(dtype=bool)


def theta_masking_points(table: pd.DataFrame, predictions: pd.DataFrame, uncertainty: Uncertainty) -> pd.DataFrame:
    """The rows of rule theta_masking's table (r, order, seed, masked_patches, top1, top5, n_images) with
    top1's interval over the images (top1_ci_low, top1_ci_high; percent) from its per-image predictions."""
    rows = []
    for (ratio, order, seed), group in predictions.groupby(["r", "order", "seed"], dropna=False, sort=True):
        low, high = accuracy_interval(_correct_by_image(group), *_settings(uncertainty))
        rows.append({"r": ratio, "order": order, "seed": seed, "top1_ci_low": low, "top1_ci_high": high})
    intervals = pd.DataFrame(rows).astype({"seed": "Int64"})
    points = table.merge(intervals, on=["r", "order", "seed"], how="left", validate="one_to_one")
    if points["top1_ci_low"].isna().any():
        raise ValueError("masking by θ: a point of the table has no per-image predictions")
    columns = list(table.columns)
    place = columns.index("top1") + 1
    return points[columns[:place] + ["top1_ci_low", "top1_ci_high"] + columns[place:]]


def theta_masking_tests(predictions: pd.DataFrame, uncertainty: Uncertainty) -> pd.DataFrame:
    """For every r > 0 and θ order: top-1(order) − top-1(random) in points on the same images, against each
    random seed's mask (``control_seed``: the difference, the interval that inverts McNemar's exact test,
    and its p-value) and, with several seeds, over them (``control_seed`` <NA>: the mean difference with
    the two-level bootstrap's interval and p-value, resampling images and random masks, test
    ``paired_bootstrap``): a per-seed interval alone leaves out how much the random control varies, and
    an interval over the seeds' means alone leaves out the images."""
    rows = []
    masked = predictions[predictions["r"] > 0]
    for ratio, at_ratio in masked.groupby("r", sort=True):
        controls = {
            int(control_seed): _correct_by_image(group)
            for control_seed, group in at_ratio[at_ratio["order"] == CONTROL].groupby("seed", sort=True)
        }
        for order in THETA_ORDERS:
            theta = at_ratio[at_ratio["order"] == order]
            if theta.empty or not controls:
                continue
            correct = _correct_by_image(theta)
            for control_seed, control in controls.items():
                comparison = paired_comparison(correct, control, *_settings(uncertainty))
                rows.append({"r": ratio, "order": order, "control_seed": control_seed} | comparison)
            if len(controls) > 1:  # paired by image and by seed: carries the images' variance and the masks'
                stacked = np.stack(list(controls.values()))
                comparison = paired_comparison(
                    np.broadcast_to(correct, stacked.shape), stacked, *_settings(uncertainty)
                )
                rows.append({"r": ratio, "order": order, "control_seed": pd.NA} | comparison)
    columns = ["r", "order", "control_seed", "diff", "diff_ci_low", "diff_ci_high", "p_value", "test"]
    return pd.DataFrame(rows, columns=columns).astype({"control_seed": "Int64"})


def head_importance_intervals(importance: pd.DataFrame, uncertainty: Uncertainty, top_k: int) -> pd.DataFrame:
    """Per (layer, head) and whole-head importance column (mode 1): the interval of the mean over the
    images (<metric>_ci_low, _ci_high), the head's rank by that mean (1 = most important), the interval
    of its rank over the same bootstrap resamples of the images (<metric>_rank_low, _rank_high), and
    whether the whole rank interval lies within the top ``top_k`` (<metric>_top_k: one of the k most
    important heads for sure). A metric the model does not define (no prefix token) is NaN throughout."""
    columns = {}
    for metric in IMPORTANCE_COLUMNS:
        vectors = importance_vectors(importance, metric)
        heads = vectors.columns
        values = vectors.dropna().to_numpy(np.float64)
        if not len(values):
            nan = np.full(len(heads), np.nan)
            columns |= {f"{metric}_{name}": nan for name in ("ci_low", "ci_high", "rank", "rank_low", "rank_high")}
            columns[f"{metric}_top_k"] = np.zeros(len(heads), bool)
            continue
        replicates = mean_replicates(values, uncertainty.resamples, uncertainty.seed)
        low, high = replicate_interval(replicates, uncertainty.confidence)
        descending = metric not in LOWER_IS_MORE_IMPORTANT
        rank = column_ranks(values.mean(axis=0), descending)
        rank_low, rank_high = rank_interval(replicates, uncertainty.confidence, descending)
        columns |= {
            f"{metric}_ci_low": low,
            f"{metric}_ci_high": high,
            f"{metric}_rank": rank,
            f"{metric}_rank_low": rank_low,
            f"{metric}_rank_high": rank_high,
            f"{metric}_top_k": rank_high <= top_k,
        }
    index = pd.MultiIndex.from_tuples(list(heads), names=["layer", "head"])
    return pd.DataFrame(columns, index=index).reset_index()


def surely_top_heads(summary: pd.DataFrame) -> dict[str, list[str]]:
    """Per importance metric the heads (as "layer.head") marked <metric>_top_k in a head summary, by rank."""
    return {
        metric: [
            f"{row.layer}.{row.head}"
            for row in summary[summary[f"{metric}_top_k"]].sort_values(f"{metric}_rank").itertuples()
        ]
        for metric in IMPORTANCE_COLUMNS
    }


def theta_layer_differences(theta: pd.DataFrame, uncertainty: Uncertainty) -> pd.DataFrame:
    """Per layer, θ_KK − θ_NK paired image by image (each image's mean over the layer's heads) over the
    images that have both keypoint and non-keypoint patches: theta_kk, theta_nk and their difference
    (means over those images), its percentile bootstrap interval and p-value (every layer on the same
    resamples of the images), and images_paired."""
    per_image = theta.groupby(["image_id", "layer"])[["theta_kk", "theta_nk"]].mean().unstack("layer")
    paired = per_image.dropna()
    kk, nk = paired["theta_kk"], paired["theta_nk"]
    differences = (kk - nk).to_numpy(np.float64)
    table = pd.DataFrame({"layer": kk.columns, "theta_kk": kk.mean().to_numpy(), "theta_nk": nk.mean().to_numpy()})
    table["kk_minus_nk"] = differences.mean(axis=0) if len(paired) else np.nan
    if len(paired):
        replicates = mean_replicates(differences, uncertainty.resamples, uncertainty.seed)
        table["kk_minus_nk_ci_low"], table["kk_minus_nk_ci_high"] = replicate_interval(
            replicates, uncertainty.confidence
        )
        table["p_value"] = [bootstrap_pvalue(column) for column in replicates.T]
    else:
        table["kk_minus_nk_ci_low"] = table["kk_minus_nk_ci_high"] = table["p_value"] = np.nan
    table["images_paired"] = len(paired)
    return table


def _settings(uncertainty: Uncertainty) -> tuple[float, int, int]:
    return uncertainty.confidence, uncertainty.resamples, uncertainty.seed
