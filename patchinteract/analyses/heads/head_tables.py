"""The long tables of the head analyses (keyed by image_id, layer, head): pattern layouts and clusters,
the image overview, and the per-head summary of a split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import zarr

from patchinteract.analyses.heads.patterns import (
    cluster_codes,
    cluster_mean_matrices,
    pattern_name,
    pattern_scores,
    tsne_layout,
)

# Per (image, layer, head, mode) the importance table holds I_prob (eq. 3), P_ij[y] (the true class's
# probability with the head pruned), I_JSD (eq. 4), I_CLS (eq. 5) and I_patch (eq. 6). The Head
# Importance View and Fig. 7 show P_ij[y] "instead of the difference" (Li et al. Sec. 6), then the rest.
IMPORTANCE_COLUMNS = ("prob", "pruned_prob", "jsd", "cls_distance", "patch_distance")
IMPORTANCE_VIEWS = ("pruned_prob", "jsd", "cls_distance", "patch_distance")
IMPORTANCE_LABELS = {
    "pruned_prob": "P_ij[y] (head pruned)",
    "prob": "I_prob = P[y] − P_ij[y]",
    "jsd": "I_JSD (nats)",
    "cls_distance": "I_CLS (cosine distance)",
    "patch_distance": "I_patch (cosine distance)",
}
# The six pruning modes (docs/analyses.md); a model without prefix tokens has 0, 1 and 4 only.
MODE_LABELS = {0: "0 none", 1: "1 whole", 2: "2 CLS→CLS", 3: "3 CLS↔patch", 4: "4 patch→patch", 5: "5 CLS-all"}
HEAD_KEY = ["image_id", "layer", "head"]


def head_index(image_ids: np.ndarray, n_layers: int, n_heads: int) -> pd.DataFrame:
    """image_id, layer, head of every (image, layer, head) in store order."""
    return pd.MultiIndex.from_product([image_ids, range(n_layers), range(n_heads)], names=HEAD_KEY).to_frame(
        index=False
    )


def pattern_tables(
    store_path,
    codes: np.ndarray,
    *,
    perplexity: float,
    n_clusters: int,
    seed: int,
    threads: int = 1,
    iterations: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per head: the t-SNE of its CLS pattern (NaN without a prefix token) and of its code, and its
    k-means cluster; per cluster: size, name, mean layer, the pattern scores of its mean binarised
    matrix, and that matrix (``mean_matrix``, N·N values in row-major order). Returns (patterns, clusters)."""
    store = zarr.open_group(store_path, mode="r")
    top, image_ids = store["patch_top"][:], store["image_id"][:]
    n_images, n_layers, n_heads, _ = top.shape
    grid = tuple(store.attrs["grid"])
    table = head_index(image_ids, n_layers, n_heads)
    flat_codes = codes.reshape(len(table), -1)
    if "cls_pattern" in store:
        cls_patterns = store["cls_pattern"][:].reshape(len(table), -1).astype(np.float32)
        cls = tsne_layout(cls_patterns, perplexity, seed, iterations, threads)
    else:  # no prefix token: no CLS pattern
        cls = np.full((len(table), 2), np.nan, np.float32)
    patch = tsne_layout(flat_codes, perplexity, seed, iterations, threads)
    table["cls_x"], table["cls_y"], table["patch_x"], table["patch_y"] = cls[:, 0], cls[:, 1], patch[:, 0], patch[:, 1]
    table["cluster"] = cluster_codes(flat_codes, n_clusters, seed)
    n_found = int(table["cluster"].max()) + 1
    means = cluster_mean_matrices(top.reshape(len(table), -1), table["cluster"].to_numpy(), grid[0] * grid[1], n_found)
    rows = []
    for cluster in range(n_found):
        scores = pattern_scores(means[cluster], grid)
        members = table[table["cluster"] == cluster]
        rows.append(
            {
                "cluster": cluster,
                "size": len(members),
                "name": pattern_name(scores),
                "mean_layer": members["layer"].mean(),
                **scores,
                "mean_matrix": means[cluster].reshape(-1),
            }
        )
    return table, pd.DataFrame(rows)


def cluster_matrices(clusters: pd.DataFrame) -> np.ndarray:
    """(cluster, N, N) mean binarised matrices from the clusters table."""
    flat = np.stack(clusters["mean_matrix"].to_numpy())
    side = int(round(np.sqrt(flat.shape[1])))
    return flat.reshape(len(flat), side, side)


def importance_vectors(importance: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per image (rows, by image_id), the whole-head pruning (mode 1) ``metric`` of every (layer, head)."""
    whole_heads = importance[importance["mode"] == 1]
    return whole_heads.pivot(index="image_id", columns=["layer", "head"], values=metric).sort_index(axis=1)


def image_overview(
    importance: pd.DataFrame,
    images: pd.DataFrame,
    *,
    metric: str,
    perplexity: float,
    seed: int,
    threads: int = 1,
    iterations: int,
) -> pd.DataFrame:
    """The Image Overview (Sec. 5.1): t-SNE of every image's head-importance vector (l·k values)."""
    vectors = importance_vectors(importance, metric)
    if vectors.isna().all(axis=None):
        raise ValueError(f"heads.overview_metric: {metric} is undefined for this model (no prefix token)")
    layout = tsne_layout(vectors.fillna(0.0).to_numpy(np.float32), perplexity, seed, iterations, threads)
    overview = pd.DataFrame({"image_id": vectors.index, "x": layout[:, 0], "y": layout[:, 1], "metric": metric})
    return overview.merge(images[["image_id", "label", "prediction", "true_prob"]], on="image_id")


def head_summary(
    importance: pd.DataFrame, head_strength: pd.DataFrame, patterns: pd.DataFrame, clusters: pd.DataFrame
) -> pd.DataFrame:
    """Per (layer, head) over the split: mean and std over images of the importance columns (whole
    head, mode 1: the four metrics and P_ij[y]), of the strength entropy and of the mean distance; the
    head's most frequent pattern cluster, its share of the head's images, and its name."""
    whole_heads = importance[importance["mode"] == 1]
    statistics = {
        name: whole_heads.groupby(["layer", "head"])[name].agg(["mean", "std"]) for name in IMPORTANCE_COLUMNS
    } | {
        name: head_strength.groupby(["layer", "head"])[name].agg(["mean", "std"])
        for name in ("entropy", "mean_distance")
    }
    summary = pd.concat(statistics, axis=1)
    summary.columns = [f"{name}_{statistic}" for name, statistic in summary.columns]
    counts = patterns.groupby(["layer", "head"])["cluster"].value_counts(normalize=True).rename("share")
    top = counts.reset_index().sort_values(["layer", "head", "share", "cluster"], ascending=[True, True, False, True])
    top = top.drop_duplicates(["layer", "head"]).set_index(["layer", "head"])
    summary["cluster"], summary["cluster_share"] = top["cluster"], top["share"]
    summary = summary.reset_index()
    summary["pattern"] = summary["cluster"].map(clusters.set_index("cluster")["name"])
    summary["images"] = whole_heads.groupby(["layer", "head"]).size().to_numpy()
    return summary
