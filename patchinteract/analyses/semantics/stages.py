"""The three stages of the forward pass (Wu et al. Sec. 4.3, Fig. 7): Retrieval, Capture and Coach, read
off the per-layer curves of the θ_KK − θ_KN gap and the focus index.

The paper reads them by eye. Here the layers are cut into three contiguous stages by the exact
least-squares fit of three constant pieces to the per-layer pair (gap, focus index), each curve
standardised over the layers first: every pair of breakpoints is tried (l² fits), the smallest sum of
squared deviations from the stage means wins (ties: the earliest breakpoints). No torch.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

STAGES = ("retrieval", "capture", "coach")
CURVES = ("gap", "focus_index")


def standardised(curves: np.ndarray) -> np.ndarray:
    """Each column less its mean over the layers, over its standard deviation (a flat column: zeros)."""
    spread = curves.std(axis=0)
    return (curves - curves.mean(axis=0)) / np.where(spread > 0, spread, 1.0)


def segment_cost(values: np.ndarray) -> float:
    """Sum of squared deviations of the rows of ``values`` from their mean."""
    return float(((values - values.mean(axis=0)) ** 2).sum())


def three_stages(curves: np.ndarray) -> tuple[int, int]:
    """(b1, b2): the first layers of the second and third stages of the best three-piece constant fit to
    ``curves`` (layers, measures); stages are layers [0, b1), [b1, b2), [b2, L)."""
    n_layers = len(curves)
    if n_layers < len(STAGES):
        raise ValueError(f"{n_layers} layers cannot make three stages")
    values = standardised(np.asarray(curves, dtype=np.float64))
    best, cut = np.inf, (1, 2)
    for first in range(1, n_layers - 1):
        for second in range(first + 1, n_layers):
            cost = sum(segment_cost(part) for part in np.split(values, [first, second]))
            if cost < best - 1e-12:
                best, cut = cost, (first, second)
    return cut


def layer_curves(summary: pd.DataFrame) -> pd.DataFrame:
    """Per layer, the means over heads of θ_KK, θ_KN, the gap θ_KK − θ_KN and the focus index (from the
    semantics summary: one row per layer and head)."""
    layers = summary.groupby("layer")[["theta_kk", "theta_kn", "focus_index"]].mean()
    return layers.assign(gap=layers["theta_kk"] - layers["theta_kn"]).reset_index()


def stage_table(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per stage: its name, first and last layer, and the means over its layers of the gap, θ_KK,
    θ_KN and the focus index. Empty with fewer than three layers (no stages)."""
    layers = layer_curves(summary)
    columns = ["stage", "first_layer", "last_layer", "layers", "gap", "theta_kk", "theta_kn", "focus_index"]
    if len(layers) < len(STAGES):
        return pd.DataFrame(columns=columns)
    cuts = three_stages(layers[list(CURVES)].to_numpy())
    rows = []
    bounds = (0, *cuts, len(layers))
    for name, start, stop in zip(STAGES, bounds[:-1], bounds[1:], strict=True):
        part = layers.iloc[start:stop]
        means = part[["gap", "theta_kk", "theta_kn", "focus_index"]].mean()
        rows.append(
            {
                "stage": name,
                "first_layer": int(part["layer"].iloc[0]),
                "last_layer": int(part["layer"].iloc[-1]),
                "layers": len(part),
            }
            | means.to_dict()
        )
    return pd.DataFrame(rows, columns=columns)


def attention_map(attention: np.ndarray, n_prefix: int, grid: tuple[int, int]) -> np.ndarray:
    """(rows, cols): one layer's attention (heads, T, T) averaged over heads, from the first prefix (CLS)
    token to every patch, or without a prefix token averaged over the patches' rows."""
    mean = np.asarray(attention, dtype=np.float64).mean(axis=0)
    rows = mean[:1] if n_prefix else mean[n_prefix:]
    return rows[:, n_prefix:].mean(axis=0).reshape(grid)


def middle_layers(stages: pd.DataFrame) -> list[int]:
    """The middle layer of each stage (the heat map's sample)."""
    return [(int(row.first_layer) + int(row.last_layer)) // 2 for row in stages.itertuples()]
