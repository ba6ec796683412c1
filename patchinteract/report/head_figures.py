"""Figures of the head analyses (Li et al.): importance of every head (Fig. 7), the pruning modes of the
most important heads, entropy against layer (Fig. 8), the pattern layouts (Fig. 12) and the clusters'
mean matrices (Fig. 13). Called by notebooks/head_analyses.ipynb."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from patchinteract.analyses.heads.head_tables import (
    IMPORTANCE_COLUMNS,
    IMPORTANCE_LABELS,
    IMPORTANCE_VIEWS,
    MODE_LABELS,
    cluster_matrices,
)


def whole_head_statistics(importance: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over images of each metric for whole-head pruning (mode 1), indexed by (layer, head)."""
    return importance[importance["mode"] == 1].groupby(["layer", "head"])[list(IMPORTANCE_COLUMNS)].agg(["mean", "std"])


def plot_head_importance(summary: pd.DataFrame) -> plt.Figure:
    """Fig. 7: P_ij[y] and the three distances over all l·k heads from the head summary: the mean over the
    images, the spread of the images (± std, light) and the interval of the mean (dark); a star marks a
    head whose whole rank interval lies within the top k (<metric>_top_k)."""
    summary = summary.sort_values(["layer", "head"])
    n_heads = int(summary["head"].max()) + 1
    x = np.arange(len(summary))
    figure, axes = plt.subplots(len(IMPORTANCE_VIEWS), 1, figsize=(max(6, len(x) * 0.12), 8), sharex=True)
    for axis, metric in zip(axes, IMPORTANCE_VIEWS, strict=True):
        mean, std = summary[f"{metric}_mean"].to_numpy(), summary[f"{metric}_std"].fillna(0).to_numpy()
        axis.fill_between(x, mean - std, mean + std, color="tab:blue", alpha=0.15, linewidth=0)
        axis.fill_between(
            x, summary[f"{metric}_ci_low"], summary[f"{metric}_ci_high"], color="tab:blue", alpha=0.5, linewidth=0
        )
        axis.plot(x, mean, color="tab:blue", linewidth=1)
        top = summary[f"{metric}_top_k"].to_numpy(bool)
        axis.scatter(x[top], mean[top], marker="*", s=40, color="tab:red", zorder=3)
        for boundary in range(n_heads, len(x), n_heads):
            axis.axvline(boundary - 0.5, color="grey", linewidth=0.5)
        axis.set_ylabel(IMPORTANCE_LABELS[metric], fontsize=8)
    axes[-1].set_xticks(x[::n_heads], [f"L{layer}" for layer in range(len(x) // n_heads)])
    axes[-1].set_xlabel("head (grouped by layer)")
    figure.suptitle(
        f"Head importance by pruning, {int(summary['images'].max())} images\nline: mean; light: ± std; dark: "
        "interval of the mean; ★: rank interval within the top k",
        fontsize=10,
    )
    return figure


def most_important_heads(importance: pd.DataFrame, count: int, metric: str = "prob") -> list[tuple[int, int]]:
    """The ``count`` heads with the largest mean whole-head ``metric``."""
    means = whole_head_statistics(importance)[(metric, "mean")]
    return list(means.nlargest(count).index)


def plot_pruning_modes(importance: pd.DataFrame, heads: list[tuple[int, int]]) -> plt.Figure:
    """Mean of each metric per pruning mode for ``heads`` (the paper's Fig. 1B2, for several heads)."""
    figure, axes = plt.subplots(len(IMPORTANCE_VIEWS), len(heads), figsize=(2.6 * len(heads), 8), squeeze=False)
    for column, (layer, head) in enumerate(heads):
        rows = importance[(importance["layer"] == layer) & (importance["head"] == head)]
        means = rows.groupby("mode")[list(IMPORTANCE_VIEWS)].mean()
        for row, metric in enumerate(IMPORTANCE_VIEWS):
            axis = axes[row, column]
            axis.bar(range(len(means)), means[metric].to_numpy(), color="tab:orange")
            axis.set_xticks(range(len(means)), [MODE_LABELS[m] for m in means.index], rotation=60, fontsize=6)
            axis.tick_params(axis="y", labelsize=7)
            if column == 0:
                axis.set_ylabel(IMPORTANCE_LABELS[metric], fontsize=7)
            if row == 0:
                axis.set_title(f"layer {layer}, head {head}", fontsize=9)
    figure.suptitle(f"Pruning modes ({len(MODE_LABELS)} defined) of the heads with the largest mean I_prob")
    figure.tight_layout()
    return figure


def plot_entropy(head_strength: pd.DataFrame) -> plt.Figure:
    """Fig. 8: normalised entropy of each head's k-hop strength vector against its layer (mean ± std)."""
    statistics = head_strength.groupby(["layer", "head"])["entropy"].agg(["mean", "std"]).reset_index()
    n_heads = statistics["head"].max() + 1
    offset = (statistics["head"] - (n_heads - 1) / 2) / (2.5 * n_heads)  # heads side by side in a layer
    figure, axis = plt.subplots(figsize=(7, 4))
    axis.errorbar(
        statistics["layer"] + offset,
        statistics["mean"],
        yerr=statistics["std"].fillna(0),
        fmt="o",
        markersize=4,
        linewidth=0.8,
        capsize=2,
    )
    trend = statistics.groupby("layer")["mean"].mean()
    axis.plot(trend.index, trend.to_numpy(), color="black", linewidth=1, label="layer mean")
    axis.set_xlabel("layer")
    axis.set_ylabel("entropy of s (normalised)")
    axis.set_ylim(0, 1.02)
    axis.set_xticks(sorted(statistics["layer"].unique()))
    axis.legend()
    axis.set_title("Attention strength entropy per head (low: local, high: global)")
    return figure


def plot_pattern_layouts(patterns: pd.DataFrame, clusters: pd.DataFrame) -> plt.Figure:
    """Fig. 12: t-SNE of all heads by CLS pattern and by patch-pattern code, coloured by layer; the
    patch layout carries each cluster's number and name at its centre."""
    figure, axes = plt.subplots(1, 2, figsize=(12, 5.5))
    n_layers = patterns["layer"].max() + 1
    colours = plt.get_cmap("viridis", n_layers)
    for axis, (x, y, title) in zip(
        axes,
        [("cls_x", "cls_y", "CLS patterns"), ("patch_x", "patch_y", "patch patterns (autoencoder codes)")],
        strict=True,
    ):
        if patterns[x].isna().all():
            axis.text(0.5, 0.5, "no prefix (CLS) token", ha="center", va="center", transform=axis.transAxes)
        else:
            # Rasterised: 144,000 vector points would make the PDF slow to write and to open.
            points = axis.scatter(
                patterns[x],
                patterns[y],
                c=patterns["layer"],
                cmap=colours,
                s=3,
                alpha=0.6,
                vmin=-0.5,
                vmax=n_layers - 0.5,
                linewidths=0,
                rasterized=True,
            )
        axis.set_title(title)
        axis.set_xticks([])
        axis.set_yticks([])
    names = clusters.set_index("cluster")["name"]
    for cluster, members in patterns.groupby("cluster"):
        axes[1].annotate(
            f"{cluster}: {names[cluster]}",
            (members["patch_x"].median(), members["patch_y"].median()),
            fontsize=7,
            ha="center",
            bbox={"boxstyle": "round", "fc": "white", "alpha": 0.8},
        )
    figure.colorbar(points, ax=axes, label="layer", ticks=range(n_layers))
    return figure


def plot_cluster_means(clusters: pd.DataFrame) -> plt.Figure:
    """Fig. 13: the mean binarised patch matrix of each cluster, with its name and size."""
    means = cluster_matrices(clusters)
    count = len(clusters)
    columns = min(4, count)
    rows = math.ceil(count / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.6 * rows), squeeze=False, layout="constrained")
    for axis in axes.flat:
        axis.axis("off")
    for axis, cluster in zip(axes.flat, clusters.itertuples(), strict=False):
        axis.imshow(means[cluster.cluster], cmap="magma", interpolation="nearest")
        # Mixture names can be long: break them at each "+".
        name = cluster.name.replace("+", " +\n")
        axis.set_title(f"{cluster.cluster}: {name}\n{cluster.size} heads", fontsize=8)
    figure.suptitle("Mean binarised patch matrix per cluster (rows: query patch, columns: key patch)")
    return figure
