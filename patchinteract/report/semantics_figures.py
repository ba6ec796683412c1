"""Figures of the semantic analyses (Wu et al.): θ_KK, θ_NK, θ_KN, θ_NN per layer (Fig. 5), the focus index
per layer (Fig. 6), accuracy under masking by θ with the random control (Fig. 8), and the keypoints and
masked patches of a few images. Called by notebooks/semantic_analyses.ipynb."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from patchinteract.analyses.semantics.ranking import keep_mask, masked_count, patch_ranking
from patchinteract.report.figures import show_dropped_patches
from patchinteract.report.statistics import excludes_zero

THETA_LABELS = {
    "theta_kk": "θ_KK  keypoint → keypoint",
    "theta_nk": "θ_NK  non-keypoint → keypoint",
    "theta_kn": "θ_KN  keypoint → non-keypoint",
    "theta_nn": "θ_NN  non-keypoint → non-keypoint",
}
ORDER_COLOURS = {"top": "tab:red", "bottom": "tab:blue", "random": "grey"}


def per_layer_points(axis, summary: pd.DataFrame, column: str, colour: str, label: str) -> None:
    """One point per head (its mean over images) and the line of the layer means."""
    jitter = (summary["head"] / max(1, summary["head"].max()) - 0.5) * 0.3
    axis.scatter(summary["layer"] + jitter, summary[column], s=10, color=colour, alpha=0.5, linewidth=0)
    means = summary.groupby("layer")[column].mean()
    axis.plot(means.index, means.to_numpy(), color=colour, linewidth=2, marker="o", markersize=3, label=label)


def plot_theta_per_layer(summary: pd.DataFrame, layers: pd.DataFrame) -> plt.Figure:
    """Fig. 5: θ_KK, θ_NK, θ_KN and θ_NN of every head against the layer, with the layer means, and per
    layer θ_KK − θ_NK paired image by image with its interval (``layers``: semantics_layers table)."""
    figure, axes = plt.subplots(1, 3, figsize=(14, 3.6), layout="constrained")
    pairs = (("theta_kk", "theta_nk"), ("theta_kn", "theta_nn"))
    for axis, columns in zip(axes[:2], pairs, strict=True):
        for column, colour in zip(columns, ("tab:blue", "tab:orange"), strict=True):
            per_layer_points(axis, summary, column, colour, THETA_LABELS[column])
        axis.legend(fontsize=8)
    axes[1].sharey(axes[0])
    axes[0].set_ylabel("θ (mean over images)")
    difference = axes[2]
    difference.axhline(0, color="grey", linewidth=0.8)
    difference.fill_between(
        layers["layer"], layers["kk_minus_nk_ci_low"], layers["kk_minus_nk_ci_high"], color="tab:blue", alpha=0.3,
        linewidth=0, label="interval",
    )  # fmt: skip
    difference.plot(layers["layer"], layers["kk_minus_nk"], color="tab:blue", marker="o", markersize=3, label="mean")
    difference.set_ylabel("θ_KK − θ_NK (paired by image)")
    difference.legend(fontsize=8)
    for axis in axes:
        axis.set_xlabel("layer")
        axis.set_xticks(sorted(summary["layer"].unique()))
    images = int(summary["images"].max())
    without = int(summary["images_without_kk"].max()), int(summary["images_without_nk"].max())
    figure.suptitle(
        f"Patch interrelation θ per head and layer: {images} images "
        f"({without[0]} without keypoint patches, {without[1]} without non-keypoint patches; "
        f"{int(layers['images_paired'].max())} have both)",
        fontsize=10,
    )
    return figure


def plot_focus_index(summary: pd.DataFrame) -> plt.Figure:
    """Fig. 6: the attention focus index of every head against the layer (higher = broader attention)."""
    figure, axis = plt.subplots(figsize=(5, 3.6))
    per_layer_points(axis, summary, "focus_index", "tab:blue", "layer mean")
    axis.set_xlabel("layer")
    axis.set_xticks(sorted(summary["layer"].unique()))
    axis.set_ylabel("focus index (entropy, nats)")
    axis.legend(fontsize=8)
    axis.set_title("Attention focus index per head (higher = broader)", fontsize=10)
    return figure


def plot_theta_masking(masking: pd.DataFrame, tests: pd.DataFrame) -> plt.Figure:
    """Fig. 8: val top-1 against the masked share r for Top and Bottom θ with their intervals over the
    images, and the random control (the mean of its seeds, the band spanning the seeds' intervals); a ring
    marks a point whose paired test against random excludes no difference (over the seeds where there are
    several)."""
    figure, axis = plt.subplots(figsize=(5.5, 3.8))
    overall = tests[tests["control_seed"].isna()] if tests["control_seed"].isna().any() else tests
    for order in ("top", "bottom"):
        rows = masking[masking["order"] == order].sort_values("r")
        errors = [rows["top1"] - rows["top1_ci_low"], rows["top1_ci_high"] - rows["top1"]]
        colour = ORDER_COLOURS[order]
        axis.errorbar(rows["r"] * 100, rows["top1"], yerr=errors, marker="o", markersize=4, capsize=2, color=colour,
                      label=f"{order} θ masked")  # fmt: skip
        marked = overall[(overall["order"] == order) & excludes_zero(overall["diff_ci_low"], overall["diff_ci_high"])]
        points = rows[rows["r"].isin(marked["r"])]
        axis.scatter(points["r"] * 100, points["top1"], s=110, facecolor="none", edgecolor=colour, linewidth=1.2)
    random = (
        masking[masking["order"] == "random"]
        .groupby("r")
        .agg(mean=("top1", "mean"), low=("top1_ci_low", "min"), high=("top1_ci_high", "max"))
    )
    seeds = masking.loc[masking["order"] == "random", "seed"].nunique()
    colour = ORDER_COLOURS["random"]
    axis.plot(random.index * 100, random["mean"], color=colour, linestyle="--", label=f"random (mean of {seeds} seeds)")
    axis.fill_between(random.index * 100, random["low"], random["high"], color=colour, alpha=0.25, linewidth=0,
                      label="random (its seeds' intervals)")  # fmt: skip
    axis.scatter([], [], s=110, facecolor="none", edgecolor="black", label="differs from random")
    axis.set_xlabel("masked patches r (%)")
    axis.set_ylabel("val top-1 (%)")
    axis.legend(fontsize=8)
    test = "paired bootstrap over images and seeds" if seeds > 1 else "McNemar"
    axis.set_title(f"Masking by θ ({int(masking['n_images'].iloc[0])} val images; {test})", fontsize=10)
    return figure


def plot_masked_patches(
    views: np.ndarray,
    points: np.ndarray,
    scores: np.ndarray,
    ratio: float,
    grid: tuple[int, int],
    image_ids: np.ndarray,
) -> plt.Figure:
    """For each image: its SIFT keypoints (circles of the keypoint's scale), and the top and bottom r of the
    patches by θ masked (red). ``views`` (image, H, W, 3), ``points`` (image, K, 3) NaN-padded, ``scores``
    (image, N) the patch scores of the same images."""
    count = masked_count(ratio, scores.shape[1])
    figure, axes = plt.subplots(len(views), 3, figsize=(7.5, 2.6 * len(views)), squeeze=False)
    for row, view in enumerate(views):
        axis = axes[row, 0]
        axis.imshow(view)
        for x, y, size in points[row][~np.isnan(points[row, :, 0])]:
            axis.add_patch(plt.Circle((x, y), size / 2, fill=False, edgecolor="lime", linewidth=0.8))
        axis.set_title(f"val image {image_ids[row]}: keypoints", fontsize=9)
        axis.set_xticks([])
        axis.set_yticks([])
        for column, order in ((1, "top"), (2, "bottom")):
            keep = keep_mask(patch_ranking(scores[row : row + 1], order), count)[0]
            show_dropped_patches(axes[row, column], view, keep, grid, f"{order} {ratio:.0%} by θ masked")
    return figure


STAGE_COLOURS = {"retrieval": "tab:blue", "capture": "tab:orange", "coach": "tab:green"}


def plot_three_stages(layers: pd.DataFrame, stages: pd.DataFrame, maps: list[np.ndarray]) -> plt.Figure:
    """Fig. 7: the gap θ_KK − θ_KN and the focus index per layer with the three stages shaded, and one
    attention map per stage (``maps``: the stage's middle layer, :func:`stages.attention_map`)."""
    figure = plt.figure(figsize=(10, 3.6))
    grid = figure.add_gridspec(1, 2 + len(maps), width_ratios=[2.2, 0.4] + [1] * len(maps))
    axis = figure.add_subplot(grid[0, 0])
    focus = axis.twinx()
    for row in stages.itertuples():
        axis.axvspan(row.first_layer - 0.5, row.last_layer + 0.5, color=STAGE_COLOURS[row.stage], alpha=0.12)
        middle = (row.first_layer + row.last_layer) / 2
        axis.text(middle, 1.02, row.stage, transform=axis.get_xaxis_transform(), ha="center", fontsize=8)
    axis.plot(layers["layer"], layers["gap"], color="tab:red", marker="o", markersize=3, label="θ_KK − θ_KN")
    focus.plot(
        layers["layer"], layers["focus_index"], color="tab:purple", marker="s", markersize=3, label="focus index"
    )
    axis.set_xlabel("layer")
    axis.set_ylabel("θ_KK − θ_KN (mean over heads)", color="tab:red")
    focus.set_ylabel("focus index (nats)", color="tab:purple")
    axis.set_xticks(layers["layer"])
    if stages.empty:
        axis.set_title("fewer than three layers: no stages", fontsize=9)
    for index, (row, attention) in enumerate(zip(stages.itertuples(), maps, strict=True)):
        heat = figure.add_subplot(grid[0, 2 + index])
        heat.imshow(attention, cmap="viridis")
        heat.set_title(f"{row.stage}: layer {(row.first_layer + row.last_layer) // 2}", fontsize=8)
        heat.set_xticks([])
        heat.set_yticks([])
    return figure
