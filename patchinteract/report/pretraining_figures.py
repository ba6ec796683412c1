"""Figures of the MAE pre-training (Wu et al. Fig. 9: k-NN top-1 against the round for both mask
schedules) and of the restoration experiment (Fig. 2: masked and restored images). Called by
notebooks/pretraining.ipynb."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from patchinteract.analyses.semantics.guided import RESTORATION_CHOICES
from patchinteract.report.figures import show_dropped_patches

SCHEDULE_COLOURS = {"random": "grey", "guided": "tab:red"}


def plot_pretraining_curves(curves: pd.DataFrame, table: pd.DataFrame) -> plt.Figure:
    """k-NN top-1 per round of each schedule (mean over seeds, band: lowest to highest seed), the guided
    curriculum's steps shaded with their β, and 95 % of the random schedule's final top-1 dashed."""
    figure, axis = plt.subplots(figsize=(6.5, 4))
    guided = curves[curves["schedule"] == "guided"].drop_duplicates("round").sort_values("round")
    for step, (beta, rounds) in enumerate(guided.groupby("beta", sort=False)["round"]):
        axis.axvspan(rounds.min() - 0.5, rounds.max() + 0.5, color="tab:red", alpha=0.04 + 0.04 * (step % 2))
        axis.text(rounds.mean(), 0.02, f"β {beta:.2f}", transform=axis.get_xaxis_transform(), ha="center", fontsize=7)
    for schedule, rows in curves.groupby("schedule", sort=False):
        per_round = rows.groupby("round")["knn_top1"].agg(["mean", "min", "max"])
        colour = SCHEDULE_COLOURS.get(schedule, "tab:blue")
        seeds = rows["seed"].nunique()
        axis.plot(
            per_round.index,
            per_round["mean"],
            color=colour,
            marker="o",
            markersize=3,
            label=f"{schedule} ({seeds} seed{'s' if seeds > 1 else ''})",
        )
        axis.fill_between(per_round.index, per_round["min"], per_round["max"], color=colour, alpha=0.2, linewidth=0)
    threshold = float(table["reach_threshold"].iloc[0])
    if np.isfinite(threshold):
        axis.axhline(threshold, color="black", linestyle="--", linewidth=0.8, label="95 % of random's final")
    axis.set_xlabel("round (epoch of the train split)")
    axis.set_ylabel("k-NN top-1 on val (%)")
    axis.legend(fontsize=8, loc="lower right")
    axis.set_title("MAE pre-training: random vs guided masks", fontsize=10)
    return figure


def plot_restoration_examples(image: np.ndarray, masked: np.ndarray, restored: np.ndarray, runs, grid) -> plt.Figure:
    """Per image and schedule (its first seed's MAE): the image, then for each choice of masked patches
    (keypoint, non-keypoint, random) the masked image and its restoration. ``image`` (image, C, H, W),
    ``masked`` (image, run, choice, N), ``restored`` (image, run, choice, C, H, W), ``runs`` [(schedule, seed)]."""
    shown = {}
    for index, (schedule, seed) in enumerate(runs):
        if schedule not in shown or seed < runs[shown[schedule]][1]:
            shown[schedule] = index
    rows = [(i, schedule, run) for i in range(len(image)) for schedule, run in shown.items()]
    columns = 1 + 2 * len(RESTORATION_CHOICES)
    figure, axes = plt.subplots(len(rows), columns, figsize=(1.6 * columns, 1.7 * len(rows)), squeeze=False)
    for row, (i, schedule, run) in enumerate(rows):
        view = image[i].transpose(1, 2, 0)
        axes[row, 0].imshow(view)
        axes[row, 0].set_title(f"{schedule} MAE", fontsize=7)
        for c, choice in enumerate(RESTORATION_CHOICES):
            show_dropped_patches(axes[row, 1 + 2 * c], view, ~masked[i, run, c], grid, f"{choice} masked")
            axes[row, 2 + 2 * c].imshow(restored[i, run, c].transpose(1, 2, 0))
            axes[row, 2 + 2 * c].set_title("restored", fontsize=7)
    for axis in axes.ravel():
        axis.set_xticks([])
        axis.set_yticks([])
        axis.title.set_fontsize(7)
    return figure
