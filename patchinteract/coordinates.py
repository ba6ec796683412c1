"""Where a patch is, in one convention for the whole project: patches are numbered row-major on a
(rows, cols) grid, p = y * cols + x, with x the column and y the row; a window or box is
[x_left, y_top, x_right, y_bottom], both ends inclusive (eq. 4's compact windows)."""

from __future__ import annotations

import numpy as np


def patch_xy(patches, cols: int):
    """(x, y) = (column, row) of patch numbers ``patches`` (an int, a NumPy array or a torch tensor) on a grid
    ``cols`` wide: x = p mod cols, y = p div cols."""
    return patches % cols, patches // cols


def patch_number(x, y, cols: int):
    """The patch at column ``x`` and row ``y`` of a grid ``cols`` wide (the inverse of :func:`patch_xy`)."""
    return y * cols + x


def grid_xy(grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of every patch of a (rows, cols) grid, in patch order."""
    rows, cols = grid
    return patch_xy(np.arange(rows * cols), cols)
