"""Masks of a horizontally flipped image: every compact mask array mirrored left-right."""

from __future__ import annotations

import numpy as np

from patchinteract.coordinates import grid_xy


def mirrored_patches(grid: tuple[int, int]) -> np.ndarray:
    """Index of each patch's mirror image under a horizontal flip (an involution). (N,) int64."""
    xs, ys = grid_xy(grid)
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
