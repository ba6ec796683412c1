"""Attention windows (AWD, eq. 4-5), indiscriminative patches (DIP) and responsive fields (eq. 6-7).

Every function works on a batch of images at once, vectorised over images and
patches. Patch p sits at column x_p = p mod w and row y_p = p div w of the
(h, w) patch grid. Windows are inclusive boxes [x_l, y_t, x_r, y_b]. The
decisions on the paper's ambiguities are those of docs/method.md.
"""

from __future__ import annotations

import math

import numpy as np


def share_count(share: float, total: int) -> int:
    """floor(share * total), robust to float error (0.29 * 100 is 28.999...)."""
    return math.floor(round(share * total, 9))


def patch_coordinates(grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of every patch in row-major order: x = p mod w, y = p div w."""
    rows, cols = grid
    patches = np.arange(rows * cols)
    return patches % cols, patches // cols


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
    xs, ys = patch_coordinates(grid)
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
    xs, ys = patch_coordinates(grid)
    count = field.sum(axis=-1)
    centroid_x = (field * xs).sum(axis=-1) / count
    centroid_y = (field * ys).sum(axis=-1) / count
    return np.stack([centroid_x - xs, centroid_y - ys], axis=-1).astype(np.float32)


# --------------------------------------------------------------------------- horizontal flip
# A training view flipped left-right mirrors the image, so each mask of that sample must be
# mirrored too: patch (x, y) becomes (w - 1 - x, y), and a box [x_l, y_t, x_r, y_b] becomes
# [w - 1 - x_r, y_t, w - 1 - x_l, y_b]. Masks are in patch coordinates, so this is exact.


def mirrored_patches(grid: tuple[int, int]) -> np.ndarray:
    """Index of each patch's mirror image under a horizontal flip (an involution). (N,) int64."""
    xs, ys = patch_coordinates(grid)
    return ys * grid[1] + (grid[1] - 1 - xs)


def mirror_boxes(boxes: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Windows or field boxes (..., N, 4) of the flipped image: each box mirrored, moved to the mirrored patch."""
    moved = boxes[..., mirrored_patches(grid), :][..., [2, 1, 0, 3]]  # x_r, y_t, x_l, y_b
    moved[..., [0, 2]] = grid[1] - 1 - moved[..., [0, 2]]
    return moved


def mirror_patch_values(values: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Per-patch values (..., N) such as DIP's keep flags, moved to the mirrored patch."""
    return values[..., mirrored_patches(grid)]


def mirror_packed_members(packed: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Sets packed as bits along the key axis (..., N, ⌈N/8⌉), e.g. S_p: rows and members mirrored."""
    order = mirrored_patches(grid)
    members = np.unpackbits(packed, axis=-1, count=len(order)).astype(bool)
    return np.packbits(members[..., order, :][..., order], axis=-1)


MIRRORS = {
    "window": mirror_boxes,
    "field_box": mirror_boxes,
    "keep": mirror_patch_values,
    "field_members": mirror_packed_members,
}
"""How each compact mask array of the mask stores follows a horizontal flip, by array name."""
