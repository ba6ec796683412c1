"""Responsive fields (eq. 6-7): each patch's window restricted to the kept patches, its size,
tendency and centroid offset."""

from __future__ import annotations

import numpy as np

from patchinteract.coordinates import grid_xy
from patchinteract.masks.windows import bounding_boxes


def responsive_field_members(members: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Eq. 6: S_p = {p} ∪ {i in B_p : i not in D}. (image, N, N) bool, row p = S_p."""
    return (members & keep[:, None, :]) | np.eye(members.shape[-1], dtype=bool)


def responsive_field_size(field: np.ndarray) -> np.ndarray:
    """|S_p| (Fig. 7's heat map): (image, N) int16."""
    return field.sum(axis=-1).astype(np.int16)


def responsive_field_tendency(field: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Eq. 7: R_p = (x_r - x_l, y_b - y_t) of S_p's box, unit length; zero when S_p is one patch.

    Returns (image, N, 2) float32 as (dx, dy).
    """
    boxes = bounding_boxes(field, grid).astype(np.float32)
    extent = np.stack([boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]], axis=-1)
    length = np.linalg.norm(extent, axis=-1, keepdims=True)
    return np.divide(extent, length, out=np.zeros_like(extent), where=length > 0)


def responsive_field_offset(field: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Signed offset of S_p's centroid from patch p (docs/method.md): (image, N, 2) float32 as (dx, dy).

    This is the direction an arrow "towards" the field needs; eq. 7's R_p has no sign.
    """
    xs, ys = grid_xy(grid)
    count = field.sum(axis=-1)
    centroid_x = (field * xs).sum(axis=-1) / count
    centroid_y = (field * ys).sum(axis=-1) / count
    return np.stack([centroid_x - xs, centroid_y - ys], axis=-1).astype(np.float32)
