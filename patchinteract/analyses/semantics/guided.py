"""Which patches MAE pre-training masks (Wu et al. Sec. 5.2): a random mask, or the guided mask whose share β
of keypoint patches among the masked ones rises over a curriculum.

An image of N patches masks m = floor(N·r + 1/2) of them (r constant, as :func:`ranking.masked_count`).
Guided, round(N·r·β) of them are keypoint patches (t_j > 0 in the keypoint store) and the rest
non-keypoint ones, drawn uniformly within each group (the paper shuffles both lists), or the highest-θ
keypoint and lowest-θ non-keypoint patches (option ``order: theta``). An image with too few patches of
one kind takes the rest from the other kind: the patches so moved are counted (:func:`fallback`).
No torch: the masks are drawn with a NumPy generator seeded per sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from patchinteract.analyses.semantics.ranking import masked_count

SCHEDULES = ("random", "guided")
ORDERS = ("uniform", "theta")
# The restoration experiment's choices of masked patches (Wu et al. Sec. 2, Fig. 2).
RESTORATION_CHOICES = ("keypoint", "non_keypoint", "random")


def curriculum_beta(round_index: int, betas: list[float], rounds_per_step: int) -> float:
    """β of round ``round_index`` (from 0): ``betas[0]`` for the first ``rounds_per_step`` rounds, then the
    next value every ``rounds_per_step`` rounds; after the last step it stays."""
    return float(betas[min(round_index // rounds_per_step, len(betas) - 1)])


def guided_counts(n_patches: int, ratio: float, beta: float, n_keypoint: int) -> tuple[int, int, int]:
    """(keypoint, non-keypoint, moved) masked patches of an image with ``n_keypoint`` keypoint patches:
    round(N·r·β) keypoint ones, the rest of the m masked non-keypoint ones; ``moved`` of them come from
    the other kind because the image has too few of one kind."""
    total = masked_count(ratio, n_patches)
    wanted = min(int(np.floor(n_patches * ratio * beta + 0.5)), total)
    keypoint = min(max(wanted, total - (n_patches - n_keypoint)), n_keypoint)
    return keypoint, total - keypoint, abs(keypoint - wanted)


def fallback(keypoint: np.ndarray, ratio: float, beta: float) -> tuple[int, int]:
    """(images, patches): how many of the images of ``keypoint`` (image, N) bool take patches from the
    other kind at β, and how many patches move so."""
    n_patches = keypoint.shape[1]
    moved = np.array([guided_counts(n_patches, ratio, beta, int(k))[2] for k in keypoint.sum(axis=1)])
    return int(np.count_nonzero(moved)), int(moved.sum())


def random_mask(n_patches: int, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """(N,) bool: m patches drawn uniformly."""
    masked = np.zeros(n_patches, dtype=bool)
    masked[rng.permutation(n_patches)[: masked_count(ratio, n_patches)]] = True
    return masked


def guided_mask(
    keypoint: np.ndarray, ratio: float, beta: float, rng: np.random.Generator, theta: np.ndarray | None = None
) -> np.ndarray:
    """(N,) bool: the guided mask of one image (``keypoint``: its (N,) keypoint patches); ``theta`` given:
    highest-θ keypoint and lowest-θ non-keypoint patches first instead of a uniform draw in each group."""
    n_keypoint, n_other = guided_counts(len(keypoint), ratio, beta, int(keypoint.sum()))[:2]
    masked = np.zeros(len(keypoint), dtype=bool)
    for group, count, descending in (
        (np.flatnonzero(keypoint), n_keypoint, True),
        (np.flatnonzero(~keypoint), n_other, False),
    ):
        if theta is None:
            order = rng.permutation(group)
        else:
            scores = -theta[group] if descending else theta[group]
            order = group[np.argsort(scores, kind="stable")]
        masked[order[:count]] = True
    return masked


@dataclass(frozen=True)
class MaskSchedule:
    """The masks of one pre-training run: ``schedule`` random or guided (by ``keypoint``, (image, N) bool,
    and with ``order: theta`` by ``theta``, (image, N)), ``ratio`` r, the curriculum ``betas`` and
    ``rounds_per_step``."""

    schedule: str
    ratio: float
    n_patches: int
    betas: tuple[float, ...] = ()
    rounds_per_step: int = 1
    keypoint: np.ndarray | None = None
    theta: np.ndarray | None = None

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"pretraining schedule must be one of {SCHEDULES}, got '{self.schedule}'")
        if self.schedule == "guided" and (self.keypoint is None or not self.betas):
            raise ValueError("the guided schedule needs the keypoint patches and the curriculum's betas")

    def beta(self, round_index: int) -> float | None:
        """β of a round (None for the random schedule)."""
        if self.schedule == "random":
            return None
        return curriculum_beta(round_index, list(self.betas), self.rounds_per_step)

    def mask(self, index: int, round_index: int, rng: np.random.Generator) -> np.ndarray:
        """(N,) bool: the masked patches of image ``index`` in round ``round_index``."""
        if self.schedule == "random":
            return random_mask(self.n_patches, self.ratio, rng)
        theta = None if self.theta is None else self.theta[index]
        return guided_mask(self.keypoint[index], self.ratio, self.beta(round_index), rng, theta)

    def fallback(self, round_index: int) -> tuple[int, int]:
        """(images, patches) taken from the other kind in a round (0, 0 for the random schedule)."""
        if self.schedule == "random":
            return 0, 0
        return fallback(self.keypoint, self.ratio, self.beta(round_index))
