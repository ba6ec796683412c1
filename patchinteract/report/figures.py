"""Figures: plotting functions that the papermill notebooks under notebooks/ call.

Notebooks hold parameters and the order of the panels; the drawing is here, so
no notebook re-implements an equation or a plot. Every figure is saved as PNG
and PDF by :func:`save_figure`.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from patchinteract.coordinates import grid_xy, patch_xy  # noqa: E402
from patchinteract.data.manifest import class_names, read_manifest, resized_image  # noqa: E402
from patchinteract.report.statistics import excludes_zero  # noqa: E402

matplotlib.use("Agg")  # headless: notebooks run under papermill on cluster nodes


DPI = 150


# Dropped (indiscriminative) patches: a plain red overlay; kept patches are NaN, i.e. transparent.
DROPPED_COLOURS = matplotlib.colors.ListedColormap(["red"])


ARROW_PATCHES = 0.4  # arrow length in patches, short enough not to reach the neighbours


def save_figure(figure: plt.Figure, stem: Path | str) -> list[Path]:
    """Write ``<stem>.png`` and ``<stem>.pdf``; returns both paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    for path in paths:
        figure.savefig(path, dpi=DPI, bbox_inches="tight")
    return paths


def load_images(
    manifest: Path | str, image_ids: list[int], size: int, class_names_file: Path | str | None = None
) -> tuple[list[np.ndarray], list[str]]:
    """The RGB images of ``image_ids`` resized to ``size`` pixels square (as the model saw them, uncropped) and
    their captions: split, id and class name (:func:`~patchinteract.data.manifest.class_names`)."""
    table, root = read_manifest(manifest)
    names = class_names(table, class_names_file)
    rows = table.set_index("image_id").loc[list(image_ids)]
    images = [resized_image(root / path, size) for path in rows["path"]]
    captions = [
        f"{row.split} image {image_id}: {names[row.label]}"
        for image_id, row in zip(image_ids, rows.itertuples(), strict=True)
    ]
    return images, captions


def show_patch_map(axis, image: np.ndarray, values: np.ndarray, grid: tuple[int, int], title: str, **style):
    """``values`` (N,) drawn as a patch-grid overlay on ``image``, with the grid lines aligned to the patches."""
    rows, cols = grid
    height, width = image.shape[:2]
    axis.imshow(image, extent=(0, width, height, 0))
    overlay = axis.imshow(
        values.reshape(rows, cols),
        extent=(0, width, height, 0),
        alpha=style.pop("alpha", 0.6),
        interpolation="nearest",
        **style,
    )
    for x in np.linspace(0, width, cols + 1):
        axis.axvline(x, color="white", linewidth=0.3)
    for y in np.linspace(0, height, rows + 1):
        axis.axhline(y, color="white", linewidth=0.3)
    axis.set_title(title, fontsize=9)
    axis.set_xticks([])
    axis.set_yticks([])
    return overlay


def mark_patch(axis, patch: int, grid: tuple[int, int], size: int, color: str = "red"):
    """Outline one patch on an image axis."""
    rows, cols = grid
    step_x, step_y = size / cols, size / rows
    x, y = patch_xy(patch, cols)
    x, y = x * step_x, y * step_y
    axis.add_patch(plt.Rectangle((x, y), step_x, step_y, fill=False, edgecolor=color, linewidth=1.5))


def show_dropped_patches(axis, image: np.ndarray, keep: np.ndarray, grid: tuple[int, int], title: str):
    """DIP's dropped patches (keep False) as a red overlay; kept patches stay clear."""
    show_patch_map(
        axis, image, np.where(keep, np.nan, 1.0), grid, title, cmap=DROPPED_COLOURS, vmin=0, vmax=1, alpha=0.5
    )


def draw_directions(axis, image: np.ndarray, vectors: np.ndarray, grid: tuple[int, int], title: str):
    """One arrow per patch, from its centre along ``vectors`` (N, 2) as (dx, dy); all ARROW_PATCHES long."""
    rows, cols = grid
    size = image.shape[0]
    xs, ys = grid_xy(grid)
    centres_x, centres_y = (xs + 0.5) * size / cols, (ys + 0.5) * size / rows
    length = np.linalg.norm(vectors, axis=-1, keepdims=True)
    unit = np.divide(vectors, length, out=np.zeros_like(vectors), where=length > 0)
    arrows = unit * ARROW_PATCHES * size / cols
    axis.imshow(image)
    axis.quiver(
        centres_x,
        centres_y,
        arrows[:, 0],
        arrows[:, 1],
        color="orange",
        angles="xy",
        scale_units="xy",
        scale=1,
        width=0.008,
    )
    axis.set_title(title, fontsize=9)
    axis.set_xticks([])
    axis.set_yticks([])


def interval_errors(rows: pd.DataFrame, prefix: str = "top1") -> np.ndarray:
    """(2, rows) distances from each mean down and up to its interval's bounds: matplotlib's yerr."""
    mean = rows[f"{prefix}_mean"].to_numpy()
    return np.stack([mean - rows[f"{prefix}_ci_low"].to_numpy(), rows[f"{prefix}_ci_high"].to_numpy() - mean])


def plot_accuracy_vs_interactions(table1: pd.DataFrame) -> plt.Figure:
    """Top-1 against E_O across α, one panel per experiment, with each model's interval as error bars;
    the retrained ViT as a reference line in its band. AWD points whose difference to the ViT has an
    interval excluding 0 are filled, the others hollow."""
    experiments = list(dict.fromkeys(table1["experiment"]))
    figure, axes = plt.subplots(1, len(experiments), figsize=(4.5 * len(experiments), 3.6), squeeze=False)
    for axis, experiment in zip(axes[0], experiments, strict=True):
        rows = table1[table1["experiment"] == experiment]
        awd = rows[rows["method"] == "awd"].sort_values("eo")
        lines = axis.errorbar(awd["eo"], awd["top1_mean"], yerr=interval_errors(awd), fmt="-", capsize=3, label="AWD")
        significant = excludes_zero(awd["diff_ci_low"], awd["diff_ci_high"])
        colour = lines[0].get_color()
        axis.scatter(
            awd["eo"],
            awd["top1_mean"],
            s=30,
            zorder=3,
            edgecolors=colour,
            facecolors=[colour if s else "white" for s in significant],
        )
        for _, row in awd.iterrows():
            axis.annotate(
                f"α={row['alpha']:g}",
                (row["eo"], row["top1_mean"]),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=8,
            )
        for _, row in rows[rows["method"] == "vit"].iterrows():
            axis.axhline(row["top1_mean"], color="gray", linestyle="--", label=f"ViT ({row['top1_mean']:.2f}%)")
            axis.axhspan(row["top1_ci_low"], row["top1_ci_high"], color="gray", alpha=0.15, linewidth=0)
        axis.margins(y=0.2)  # keep the ViT line off the frame
        axis.set_xlabel("E_O (interactions per head per layer)")
        axis.set_ylabel("val top-1 (%)")
        axis.set_title(experiment)
        axis.legend(fontsize=8)
    figure.suptitle(
        "Accuracy against the number of patch interactions (Table I)\n"
        "bars and band: intervals of top-1; filled: differs from the ViT",
        fontsize=10,
    )
    figure.tight_layout()
    return figure


def plot_winft_windows(
    images: list[np.ndarray],
    predicted: np.ndarray,
    target: np.ndarray,
    grid: tuple[int, int],
    patch: int,
    captions: list[str],
) -> plt.Figure:
    """Fig. 10: for each image (``captions``: :func:`load_images`'), w_gt's row of ``patch`` and WinFT's
    predicted row summed over layers.

    ``predicted`` is (image, layer, N, N) bool, ``target`` (image, N, N) bool.
    """
    layers = predicted.shape[1]
    figure, axes = plt.subplots(len(images), 3, figsize=(9, 3 * len(images)), squeeze=False)
    size = images[0].shape[0]
    for row, image in enumerate(images):
        axes[row, 0].imshow(image)
        mark_patch(axes[row, 0], patch, grid, size)
        axes[row, 0].set_title(f"{captions[row]}, patch {patch} (red)", fontsize=9)
        axes[row, 0].set_axis_off()
        show_patch_map(
            axes[row, 1],
            image,
            target[row, patch].astype(float),
            grid,
            "ground-truth window w_gt",
            cmap="Greens",
            vmin=0,
            vmax=1,
        )
        overlay = show_patch_map(
            axes[row, 2],
            image,
            predicted[row, :, patch].sum(axis=0),
            grid,
            f"predicted W summed over {layers} layers",
            cmap="magma",
            vmin=0,
            vmax=layers,
        )
        figure.colorbar(overlay, ax=axes[row, 2], fraction=0.046, label="layers")
        for axis in axes[row, 1:]:
            mark_patch(axis, patch, grid, size, color="cyan")
    figure.suptitle("WinFT: ground-truth window vs predicted windows (Fig. 10)")
    figure.tight_layout()
    return figure


def plot_interaction_map(
    image: np.ndarray,
    interaction: np.ndarray,
    scores: np.ndarray,
    keep: np.ndarray,
    beta: float,
    grid: tuple[int, int],
    caption: str,
) -> plt.Figure:
    """Fig. 5 (of the image ``caption`` names): U as an N×N score map, the sorted column variances
    (dip_score), the patches DIP drops at β (``keep``, from the keep store of β)."""
    figure, axes = plt.subplots(1, 3, figsize=(13, 4))
    shown = axes[0].imshow(interaction, cmap="viridis", norm=matplotlib.colors.LogNorm())
    figure.colorbar(shown, ax=axes[0], fraction=0.046, label="U (log scale)")
    axes[0].set_title(f"U of {caption} (N×N)", fontsize=10)
    axes[0].set_xlabel("key patch i")
    axes[0].set_ylabel("query patch p")
    ordered = np.sort(scores)
    dropped = int((~keep).sum())
    axes[1].plot(np.arange(len(ordered)), ordered, ".-")
    axes[1].axvspan(-0.5, dropped - 0.5, color="red", alpha=0.15, label=f"dropped at β={beta:g} ({dropped})")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("patches, by increasing column variance")
    axes[1].set_ylabel("dip_score (variance of U's column)")
    axes[1].set_title("sorted column variances", fontsize=10)
    axes[1].legend(fontsize=8)
    show_dropped_patches(axes[2], image, keep, grid, f"indiscriminative patches at β={beta:g} (red)")
    figure.suptitle("Patch interaction map and indiscriminative patches (Fig. 5)")
    figure.tight_layout()
    return figure


def plot_dip_betas(image: np.ndarray, keeps: dict[float, np.ndarray], grid: tuple[int, int]) -> plt.Figure:
    """Fig. 6: the patches DIP drops (red) at several β (``keeps``: β -> kept patches, from the keep stores)."""
    figure, axes = plt.subplots(1, len(keeps), figsize=(max(7.0, 3.2 * len(keeps)), 3.4), squeeze=False)
    for axis, (beta, keep) in zip(axes[0], sorted(keeps.items()), strict=True):
        show_dropped_patches(axis, image, keep, grid, f"β={beta:g}: {int((~keep).sum())} dropped")
    figure.suptitle("Indiscriminative patches dropped by DIP at several β (Fig. 6)")
    figure.tight_layout()
    return figure


def plot_responsive_fields(
    image: np.ndarray,
    field_size: np.ndarray,
    offset: np.ndarray,
    tendency: np.ndarray,
    grid: tuple[int, int],
    alpha: float,
    beta: float,
) -> plt.Figure:
    """Fig. 7: responsive-field tendency as arrows (towards the field's centroid; eq. 7's R_p) and size.

    Arrows show directions only: each has the same length, ARROW_PATCHES of a patch.
    """
    figure, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    draw_directions(axes[0], image, offset, grid, "direction to the field's centroid")
    draw_directions(axes[1], image, tendency, grid, "tendency R_p (eq. 7, unit length)")
    shown = show_patch_map(
        axes[2], image, field_size.astype(float), grid, "field size |S_p| (patches)", cmap="inferno", alpha=0.6
    )
    figure.colorbar(shown, ax=axes[2], fraction=0.046, label="|S_p|")
    figure.suptitle(f"Responsive fields at α={alpha:g}, β={beta:g} (Fig. 7)")
    figure.tight_layout()
    return figure


def plot_attention_rows(
    image: np.ndarray,
    attention: np.ndarray,
    interaction: np.ndarray,
    patches: list[int],
    grid: tuple[int, int],
    n_prefix: int,
    caption: str,
) -> plt.Figure:
    """Fig. 3 (of the image ``caption`` names): for each sampled patch p, its attention row in every layer
    (mean over heads) and U's row u_p.

    ``attention`` is one image's (layer, head, T, T); ``interaction`` its U (N, N).
    """
    layers = attention.shape[0]
    size = image.shape[0]
    figure, axes = plt.subplots(
        len(patches), layers + 2, figsize=(2.3 * (layers + 2), 2.5 * len(patches)), squeeze=False
    )
    for row, patch in enumerate(patches):
        axes[row, 0].imshow(image)
        mark_patch(axes[row, 0], patch, grid, size)
        axes[row, 0].set_title(f"patch {patch} (red)", fontsize=9)
        axes[row, 0].set_axis_off()
        for layer in range(layers):
            attention_row = attention[layer, :, n_prefix + patch, n_prefix:].astype(np.float32).mean(axis=0)
            show_patch_map(
                axes[row, layer + 1],
                image,
                attention_row,
                grid,
                f"layer {layer + 1} attention",
                cmap="viridis",
                alpha=0.7,
            )
            mark_patch(axes[row, layer + 1], patch, grid, size)
        shown = show_patch_map(axes[row, -1], image, interaction[patch], grid, "U row u_p", cmap="magma", alpha=0.7)
        mark_patch(axes[row, -1], patch, grid, size, color="cyan")
        figure.colorbar(shown, ax=axes[row, -1], fraction=0.046)
    figure.suptitle(f"Attention of sampled patches per layer (mean over heads) and their row of U, {caption} (Fig. 3)")
    figure.tight_layout()
    return figure


def plot_image_panels(
    images: list[np.ndarray],
    keeps: dict[float, np.ndarray],
    field_size: np.ndarray,
    offset: np.ndarray,
    grid: tuple[int, int],
    captions: list[str],
) -> plt.Figure:
    """Fig. 9: per image (``captions``: :func:`load_images`'), the input, DIP at each β (``keeps``: β -> kept
    patches per image, from the keep stores), the directions to the responsive fields, and their sizes."""
    betas = sorted(keeps)
    columns = len(betas) + 3
    figure, axes = plt.subplots(len(images), columns, figsize=(3.2 * columns, 3.3 * len(images)), squeeze=False)
    for row, image in enumerate(images):
        axes[row, 0].imshow(image)
        axes[row, 0].set_title(captions[row], fontsize=9)
        axes[row, 0].set_axis_off()
        for column, beta in enumerate(betas, start=1):
            show_dropped_patches(axes[row, column], image, keeps[beta][row], grid, f"DIP β={beta:g} (red: dropped)")
        draw_directions(axes[row, -2], image, offset[row], grid, "towards the responsive field")
        shown = show_patch_map(
            axes[row, -1], image, field_size[row].astype(float), grid, "field size |S_p|", cmap="inferno", alpha=0.6
        )
        figure.colorbar(shown, ax=axes[row, -1], fraction=0.046)
    figure.suptitle("Per image: indiscriminative patches and responsive fields (Fig. 9)")
    figure.tight_layout()
    return figure
