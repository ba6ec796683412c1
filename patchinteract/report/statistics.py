"""How sure a top-1 is: bootstrap intervals of accuracy and of paired differences, and McNemar's exact test.

Inputs are per-image correctness, ``correct`` (images,) for one seed or (seeds, images) for several
runs on the same val images. One seed: scipy's bootstrap over images. Several seeds: a two-level
bootstrap that resamples seeds and, independently, images (the same images for every seed, since
the runs share the val set), so the interval carries both the run-to-run and the test-set variance.
Every resampling is seeded: the same inputs give the same interval.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
RESAMPLES = 2000


def _per_seed(correct: np.ndarray) -> np.ndarray:
    values = np.asarray(correct, dtype=np.float64)
    return values[None] if values.ndim == 1 else values


def two_level_bootstrap(values: np.ndarray, resamples: int, seed: int, block: int = 200) -> np.ndarray:
    """Bootstrap means of ``values`` (seeds, images): each resample draws seeds and images with replacement
    (multinomial weights, so no (resamples, seeds, images) array is ever built)."""
    n_seeds, n_images = values.shape
    rng = np.random.default_rng(seed)
    means = []
    for start in range(0, resamples, block):
        size = min(block, resamples - start)
        seed_weights = rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=size)  # (size, seeds)
        image_weights = rng.multinomial(n_images, np.full(n_images, 1 / n_images), size=size)  # (size, images)
        per_seed = image_weights @ values.T / n_images  # (size, seeds): each seed's mean on the drawn images
        means.append((per_seed * seed_weights).sum(axis=1) / n_seeds)
    return np.concatenate(means)


def _interval(values: np.ndarray, confidence: float, resamples: int, seed: int) -> tuple[float, float]:
    """Percentile interval of the mean of ``values`` (seeds, images), in percent."""
    if values.shape[0] == 1:
        result = stats.bootstrap(
            (values[0],), np.mean, confidence_level=confidence, n_resamples=resamples, method="percentile",
            random_state=np.random.default_rng(seed), vectorized=True,
        )  # fmt: skip
        low, high = result.confidence_interval
    else:
        means = two_level_bootstrap(values, resamples, seed)
        low, high = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return 100.0 * float(low), 100.0 * float(high)


def accuracy_interval(
    correct: np.ndarray, confidence: float = CONFIDENCE, resamples: int = RESAMPLES, seed: int = 0
) -> tuple[float, float]:
    """The ``confidence`` bootstrap interval of top-1 (percent) from per-image correctness."""
    return _interval(_per_seed(correct), confidence, resamples, seed)


def difference_interval(
    correct: np.ndarray, reference: np.ndarray, confidence: float = CONFIDENCE, resamples: int = RESAMPLES,
    seed: int = 0,
) -> tuple[float, float]:  # fmt: skip
    """The interval of top-1(correct) − top-1(reference) in points, paired by image (and by seed index)."""
    a, b = _per_seed(correct), _per_seed(reference)
    if a.shape != b.shape:
        raise ValueError(f"paired runs need the same seeds and images, got {a.shape} and {b.shape}")
    return _interval(a - b, confidence, resamples, seed)


def mcnemar_exact(correct: np.ndarray, reference: np.ndarray) -> float:
    """McNemar's exact test of two classifiers on the same images: the two-sided binomial test of the
    discordant pairs (right for one and wrong for the other) against 1/2. 1.0 when there are none."""
    a, b = np.asarray(correct, bool), np.asarray(reference, bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"McNemar's test pairs one run per classifier on the same images, got {a.shape}, {b.shape}")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    if only_a + only_b == 0:
        return 1.0
    return float(stats.binomtest(only_a, only_a + only_b, 0.5).pvalue)
