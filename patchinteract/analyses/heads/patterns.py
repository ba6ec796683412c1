"""Attention patterns (Li et al., TVCG 2023, Sec. 5.4): CLS pattern vectors, binarised patch matrices,
the t-SNE layouts, and clusters named by scores (the autoencoder whose codes lay the matrices out is in
:mod:`patchinteract.analyses.heads.autoencoder`; this module does not import torch, so the jobs and
notebooks that lay out and draw the patterns start without it).

The binarised matrices are stored compactly, as the flat indices of their top
entries (:func:`top_entries`), and expanded to N × N only for the autoencoder.
Naming clusters by scores on their mean matrix goes beyond the paper
(docs/analyses.md): each score is the share of the matrix's mass in one kind
of region, lifted against a uniform matrix (0 = no more than uniform, 1 = all
the mass).
"""

from __future__ import annotations

import logging
import math

import numpy as np

from patchinteract.coordinates import grid_xy

log = logging.getLogger(__name__)


def cls_pattern(attn: np.ndarray, n_prefix: int) -> np.ndarray:
    """A_CLS = concat(A[0, :], A[prefix:, 0]): what the CLS token attends to, and how much each patch
    attends to it ((…, T, T) -> (…, T + N), 2N + 1 values for one prefix token)."""
    return np.concatenate([attn[..., 0, :], attn[..., n_prefix:, 0]], axis=-1)


def top_count(n_patches: int, share: float) -> int:
    """How many entries of an N × N patch matrix the binarisation keeps: share · N², at least one."""
    return max(1, math.floor(share * n_patches * n_patches))


def top_entries(attn: np.ndarray, n_prefix: int, count: int) -> np.ndarray:
    """The binarised patch matrix A_patch of every head, as sorted flat indices (…, count) of its
    ``count`` largest entries; ties go to the lower flat index."""
    n = attn.shape[-1] - n_prefix
    values = np.ascontiguousarray(attn[..., n_prefix:, n_prefix:], dtype=np.float32).reshape(-1, n * n)
    threshold = np.partition(values, n * n - count, axis=1)[:, n * n - count, None]
    above = values > threshold
    # Of the entries equal to the threshold, the first ones (lowest index) fill up the count.
    ties = values == threshold
    room = count - above.sum(axis=1, keepdims=True)
    chosen = above | (ties & (np.cumsum(ties, axis=1) <= room))
    return np.nonzero(chosen)[1].reshape(*attn.shape[:-2], count).astype(np.int32)


def binarised_matrices(top: np.ndarray, n_patches: int) -> np.ndarray:
    """Dense 0/1 float32 matrices (…, N, N) from :func:`top_entries`."""
    dense = np.zeros((int(np.prod(top.shape[:-1])), n_patches * n_patches), np.float32)
    np.put_along_axis(dense, top.reshape(len(dense), -1).astype(np.int64), 1.0, axis=1)
    return dense.reshape(*top.shape[:-1], n_patches, n_patches)


# ----------------------------------------------------------------------------- layouts and clusters


FFT_FROM = 3000  # points from which t-SNE's gradients are FFT-interpolated (below: Barnes-Hut)


def tsne_layout(features: np.ndarray, perplexity: float, seed: int, iterations: int, threads: int = 1) -> np.ndarray:
    """2-D t-SNE (openTSNE, PCA initialisation) of ``features`` (samples, d): 250 early-exaggeration
    iterations, then ``iterations`` more.

    A perplexity too large for the number of samples is lowered to (samples - 1) / 3 (logged).
    """
    from openTSNE import TSNE

    samples = len(features)
    if samples < 4:
        raise ValueError(f"t-SNE needs at least 4 samples, got {samples}")
    usable = min(perplexity, (samples - 1) / 3)
    if usable < perplexity:
        log.info("t-SNE of %d samples: perplexity %g lowered to %.1f", samples, perplexity, usable)
    # Barnes-Hut gradients for few points, FFT-interpolated ones (linear in the points) from FFT_FROM on,
    # where they are faster (docs/scaling.md; openTSNE's own switch is at 10,000 points).
    gradients = "fft" if samples >= FFT_FROM else "bh"
    embedding = TSNE(
        perplexity=usable,
        random_state=seed,
        n_jobs=threads,
        initialization="pca",
        n_iter=iterations,
        negative_gradient_method=gradients,
        verbose=False,
    )
    return np.asarray(embedding.fit(np.asarray(features, dtype=np.float64)), dtype=np.float32)


def cluster_codes(codes: np.ndarray, n_clusters: int, seed: int) -> np.ndarray:
    """k-means cluster (0 … n_clusters - 1, numbered by size, largest first) of every code."""
    from sklearn.cluster import KMeans

    n_clusters = min(n_clusters, len(codes))
    labels = KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit_predict(codes)
    by_size = np.argsort(-np.bincount(labels, minlength=n_clusters), kind="stable")
    return np.argsort(by_size)[labels]


PATTERN_SCORES = ("diagonal", "off_diagonal_1", "off_diagonal_w", "vertical", "block")
# A cluster is named after the scores at least this large (strongest first), else "diffuse".
NAME_THRESHOLD = 0.25


def pattern_regions(grid: tuple[int, int]) -> dict[str, np.ndarray]:
    """Boolean (N, N) regions of the matrix (rows = query patch) behind the pattern scores.

    diagonal: the patch itself; off_diagonal_1: its left/right neighbour (flat index ±1, same row);
    off_diagonal_w: the patch above/below (±w); block: the band 2 <= |query - key| < w around the
    diagonal (square blocks of nearby patches). ``vertical`` has no fixed region (:func:`pattern_scores`).
    """
    col, row = grid_xy(grid)
    d_row, d_col = row[:, None] - row[None, :], col[:, None] - col[None, :]
    flat = np.abs(np.arange(len(row))[:, None] - np.arange(len(row))[None, :])
    return {
        "diagonal": flat == 0,
        "off_diagonal_1": (d_row == 0) & (np.abs(d_col) == 1),
        "off_diagonal_w": (d_col == 0) & (np.abs(d_row) == 1),
        "block": (flat >= 2) & (flat < grid[1]),
    }


def lift(share: float, uniform: float) -> float:
    """How far ``share`` goes from the uniform matrix's share towards 1 (0 when the region is empty)."""
    return 0.0 if uniform >= 1 or uniform <= 0 else (share - uniform) / (1 - uniform)


def pattern_scores(matrix: np.ndarray, grid: tuple[int, int]) -> dict[str, float]:
    """The five scores of a (mean binarised) N × N matrix; ``vertical`` is column concentration: the
    share of the mass in the heaviest ceil(N / 16) key columns (a few patches everyone attends to)."""
    n = matrix.shape[0]
    total = float(matrix.sum()) or 1.0
    scores = {
        name: lift(float(matrix[region].sum()) / total, region.mean()) for name, region in pattern_regions(grid).items()
    }
    columns = max(1, math.ceil(n / 16))
    heaviest = np.sort(matrix.sum(axis=0))[::-1][:columns].sum() / total
    scores["vertical"] = lift(float(heaviest), columns / n)
    return {name: scores[name] for name in PATTERN_SCORES}


def pattern_name(scores: dict[str, float], threshold: float = NAME_THRESHOLD) -> str:
    """'+'-joined names of the scores >= threshold, strongest first (a mixture), or 'diffuse'."""
    strong = sorted((name for name in PATTERN_SCORES if scores[name] >= threshold), key=lambda n: -scores[n])
    return "+".join(strong) or "diffuse"


def cluster_mean_matrices(top: np.ndarray, clusters: np.ndarray, n_patches: int, n_clusters: int) -> np.ndarray:
    """(cluster, N, N) mean binarised matrix of each cluster, from the top entries (samples, count)
    without expanding every matrix."""
    means = np.zeros((n_clusters, n_patches * n_patches), np.float32)
    for cluster in range(n_clusters):
        members = top[clusters == cluster]
        if len(members):
            means[cluster] = np.bincount(members.reshape(-1), minlength=n_patches * n_patches) / len(members)
    return means.reshape(n_clusters, n_patches, n_patches)
