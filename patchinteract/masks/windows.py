"""Attention windows (eq. 4) and the interactions they allow (eq. 5), from the interaction map U.

Windows are compact: (image, patch, 4) int16 inclusive boxes [x_l, y_t, x_r, y_b]
on the patch grid, x the column and y the row (docs/method.md).
"""

from __future__ import annotations

import math

import numpy as np

from patchinteract.coordinates import grid_xy


def share_count(share: float, total: int) -> int:
    """floor(share * total), robust to float error (0.29 * 100 is 28.999...)."""
    return math.floor(round(share * total, 9))


def top_interactions(interaction: np.ndarray, alpha: float) -> np.ndarray:
    """Eq. 4's U': the T = max(1, floor(alpha N^2)) largest entries of each image's U.

    ``interaction`` is (image, N, N); returns a bool mask of the same shape.
    Ties at the threshold go to the lower flat index (row-major), so the
    selection is deterministic.
    """
    images, n, _ = interaction.shape
    flat = interaction.reshape(images, n * n)
    count = max(1, share_count(alpha, n * n))
    threshold = np.partition(flat, n * n - count, axis=1)[:, n * n - count, None]
    above = flat > threshold
    at_threshold = flat == threshold
    still_needed = count - above.sum(axis=1, keepdims=True)
    selected = above | (at_threshold & (np.cumsum(at_threshold, axis=1) <= still_needed))
    return selected.reshape(images, n, n)


def window_members(selected: np.ndarray) -> np.ndarray:
    """B_p of eq. 4: patch p itself plus every i with u_{p,i} in U'. (image, N, N) bool, row p = B_p."""
    return selected | np.eye(selected.shape[-1], dtype=bool)


def bounding_boxes(members: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Inclusive box [x_l, y_t, x_r, y_b] of each row's members: (image, N, 4) int16."""
    xs, ys = grid_xy(grid)
    rows, cols = grid
    boxes = np.stack(
        [
            np.where(members, xs, cols).min(axis=-1),
            np.where(members, ys, rows).min(axis=-1),
            np.where(members, xs, -1).max(axis=-1),
            np.where(members, ys, -1).max(axis=-1),
        ],
        axis=-1,
    )
    return boxes.astype(np.int16)


def attention_windows(interaction: np.ndarray, alpha: float, grid: tuple[int, int]) -> np.ndarray:
    """Eq. 4: the window of every patch, the bounding box of B_p. (image, N, 4) int16."""
    return bounding_boxes(window_members(top_interactions(interaction, alpha)), grid)


def window_areas(windows: np.ndarray) -> np.ndarray:
    """Patches inside each inclusive window: (x_r - x_l + 1)(y_b - y_t + 1). (image, N) int64."""
    windows = windows.astype(np.int64)
    return (windows[..., 2] - windows[..., 0] + 1) * (windows[..., 3] - windows[..., 1] + 1)


def window_interactions(windows: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
    """Eq. 5 with the inclusive count: O = sum over kept patches of their window areas. (image,) int64.

    With DIP, only the windows of kept patches count (docs/method.md); ``keep``
    None counts every patch. E_O is the mean of O over images.
    """
    areas = window_areas(windows)
    if keep is not None:
        areas = np.where(keep, areas, 0)
    return areas.sum(axis=-1)
