"""Which patches masking by θ removes (Wu et al., Sec. 5.1): scores, rankings (top, bottom, random) and
keep masks. NumPy only, so the figures that show the masked patches do not import torch; the model's
accuracy under masking is in :mod:`patchinteract.analyses.semantics.masking`."""

from __future__ import annotations

import numpy as np

from patchinteract.analyses.semantics.interrelation import nan_mean

MASK_ORDERS = ("top", "bottom", "random")


def check_ratios(ratios: list[float]) -> list[float]:
    """The sorted distinct ratios, each in [0, 1); raises ValueError naming semantics.masking.ratios."""
    bad = [r for r in ratios if not 0 <= r < 1]
    if bad:
        raise ValueError(f"semantics.masking.ratios must lie in [0, 1), got {bad}")
    return sorted(set(float(r) for r in ratios))


def patch_scores(theta_patch: np.ndarray, layers: str | list[int]) -> np.ndarray:
    """(image, N): θ_i averaged over heads (already, in the store) and over ``layers`` ("all" or indices).
    A patch without θ (an empty attended set in every head, only possible for γ > 1) scores NaN."""
    if layers != "all":
        n_layers = theta_patch.shape[1]
        if not layers or any(not 0 <= int(layer) < n_layers for layer in layers):
            raise ValueError(f"semantics.masking.layers: {layers} is not a list of layers in 0..{n_layers - 1}")
        theta_patch = theta_patch[:, sorted({int(layer) for layer in layers})]
    return nan_mean(theta_patch, axis=1)


def masked_count(ratio: float, n_patches: int) -> int:
    """floor(r·N + 1/2) patches are masked at ratio r."""
    return int(np.floor(ratio * n_patches + 0.5))


def patch_ranking(scores: np.ndarray, order: str, seed: int = 0) -> np.ndarray:
    """(image, N): the patches of every image in the order they are masked.

    top: highest score first; bottom: lowest first (ties: lower patch index first; NaN scores rank
    as the lowest in both); random: a permutation per image drawn from ``seed``.
    """
    filled = np.nan_to_num(scores, nan=-np.inf)
    if order == "top":
        return np.argsort(-filled, axis=1, kind="stable")
    if order == "bottom":
        return np.argsort(filled, axis=1, kind="stable")
    if order == "random":
        return np.argsort(np.random.default_rng(seed).random(scores.shape), axis=1)
    raise ValueError(f"masking order must be one of {MASK_ORDERS}, got '{order}'")


def keep_mask(ranking: np.ndarray, count: int) -> np.ndarray:
    """(image, N) bool: False for the first ``count`` patches of each ranking."""
    keep = np.ones(ranking.shape, dtype=bool)
    np.put_along_axis(keep, ranking[:, :count], False, axis=1)
    return keep


def masking_rankings(scores: np.ndarray, random_seeds: int, seed: int) -> dict[tuple[str, int | None], np.ndarray]:
    """Top, bottom and ``random_seeds`` random rankings (seeds seed, seed + 1, ...)."""
    rankings = {("top", None): patch_ranking(scores, "top"), ("bottom", None): patch_ranking(scores, "bottom")}
    for offset in range(random_seeds):
        rankings["random", seed + offset] = patch_ranking(scores, "random", seed + offset)
    return rankings
