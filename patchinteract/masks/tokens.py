"""Discriminative patches (DIP): which patch tokens a branch keeps for a β."""

from __future__ import annotations

import numpy as np

from patchinteract.masks.windows import share_count


def kept_patches(scores: np.ndarray, beta: float) -> np.ndarray:
    """DIP: drop the floor(beta N) patches with the lowest dip_score (ties: lower index first).

    ``scores`` is (image, N); returns ``keep`` (image, N) bool, True for kept patches.
    """
    images, n = scores.shape
    dropped = share_count(beta, n)
    order = np.argsort(scores, axis=1, kind="stable")
    keep = np.ones((images, n), dtype=bool)
    np.put_along_axis(keep, order[:, :dropped], False, axis=1)
    return keep
