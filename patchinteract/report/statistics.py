"""How sure a top-1 is: bootstrap intervals of accuracy and of paired differences, and McNemar's exact test.

Inputs are per-image correctness, ``correct`` (images,) for one seed or (seeds, images) for several
runs on the same val images. One seed: scipy's bootstrap over images. Several seeds: a two-level
bootstrap that resamples seeds and, independently, images (the same images for every seed, since
the runs share the val set), so the interval carries both the run-to-run and the test-set variance.
Every resampling is seeded: the same inputs give the same interval.

A paired comparison of two models on the same images tests "no difference in top-1" with McNemar's
exact test for one seed (its interval is the one that inverts the test), and with the two-level
bootstrap of the per-image differences (paired by image and by seed) for several (its p-value is the
percentile bootstrap's). Either way p < 1 − confidence exactly when the interval excludes 0 (for the
bootstrap, up to the resampling's granularity), so a marked difference is a significant one.
"""

from __future__ import annotations

import numpy as np

# scipy.stats (~0.5 s to import) is imported by the functions that test or resample: the figure jobs
# import this module for excludes_zero alone.

CONFIDENCE = 0.95
RESAMPLES = 2000


def _per_seed(correct: np.ndarray) -> np.ndarray:
    values = np.asarray(correct, dtype=np.float64)
    return values[None] if values.ndim == 1 else values


def resample_counts(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """(size, n): how often each of n items is drawn in each of ``size`` resamples of n draws with replacement
    (a multinomial count, built from uniform draws: far faster than ``rng.multinomial`` for large n)."""
    draws = rng.integers(0, n, size=(size, n)) + n * np.arange(size)[:, None]
    return np.bincount(draws.ravel(), minlength=size * n).reshape(size, n)


def block_sizes(resamples: int, block: int) -> list[int]:
    """Resamples drawn ``block`` at a time (the last block smaller): a bounded array per block."""
    return [min(block, resamples - start) for start in range(0, resamples, block)]


def two_level_bootstrap(values: np.ndarray, resamples: int, seed: int, block: int = 200) -> np.ndarray:
    """Bootstrap means of ``values`` (seeds, images): each resample draws seeds and images with replacement
    (as counts, so no (resamples, seeds, images) array is ever built)."""
    n_seeds, n_images = values.shape
    rng = np.random.default_rng(seed)
    means = []
    for size in block_sizes(resamples, block):
        seed_weights = resample_counts(rng, n_seeds, size)  # (size, seeds)
        image_weights = resample_counts(rng, n_images, size)  # (size, images)
        per_seed = image_weights @ values.T / n_images  # (size, seeds): each seed's mean on the drawn images
        means.append((per_seed * seed_weights).sum(axis=1) / n_seeds)
    return np.concatenate(means)


def mean_replicates(values: np.ndarray, resamples: int, seed: int, block: int = 200) -> np.ndarray:
    """(resamples, columns): bootstrap means of every column of ``values`` (images, columns), all columns on
    the same draws of images, so that replicates compare across columns (ranks, paired differences)."""
    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = []
    for size in block_sizes(resamples, block):
        means.append(resample_counts(rng, len(values), size) @ values / len(values))
    return np.concatenate(means)


def replicate_interval(replicates: np.ndarray, confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """The percentile interval of each column of bootstrap ``replicates`` (resamples, columns)."""
    low, high = _quantiles(replicates, confidence)
    return low, high


def column_ranks(values: np.ndarray, descending: bool = True) -> np.ndarray:
    """The rank of each entry along the last axis (1 = the largest, or the smallest with ``descending`` False;
    ties in order of position)."""
    keys = -values if descending else values
    return keys.argsort(axis=-1, kind="stable").argsort(axis=-1, kind="stable") + 1


def rank_interval(
    replicates: np.ndarray, confidence: float = CONFIDENCE, descending: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """How sure a ranking of columns is: each column's rank (1 = the largest, or the smallest with
    ``descending`` False) in every bootstrap replicate (resamples, columns), and the ranks at the
    (1 − confidence)/2 and (1 + confidence)/2 quantiles (ranks that occur, not interpolated)."""
    ranks = column_ranks(replicates, descending)
    low, high = np.quantile(ranks, [(1 - confidence) / 2, (1 + confidence) / 2], axis=0, method="inverted_cdf")
    return low.astype(int), high.astype(int)


def mean_interval(
    values: np.ndarray, confidence: float = CONFIDENCE, resamples: int = RESAMPLES, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-image ``values``, (images,) for one seed or
    (seeds, images): over images for one seed, the two-level bootstrap for several."""
    values = _per_seed(values)
    if values.shape[0] == 1:
        from scipy import stats

        result = stats.bootstrap(
            (values[0],),
            np.mean,
            confidence_level=confidence,
            n_resamples=resamples,
            method="percentile",
            random_state=np.random.default_rng(seed),
            vectorized=True,
            batch=200,  # 200 resamples in memory
        )
        low, high = result.confidence_interval
    else:
        low, high = _quantiles(two_level_bootstrap(values, resamples, seed), confidence)
    return float(low), float(high)


def _quantiles(means: np.ndarray, confidence: float) -> np.ndarray:
    return np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2], axis=0)


def accuracy_interval(
    correct: np.ndarray, confidence: float = CONFIDENCE, resamples: int = RESAMPLES, seed: int = 0
) -> tuple[float, float]:
    """The ``confidence`` bootstrap interval of top-1 (percent) from per-image correctness."""
    low, high = mean_interval(correct, confidence, resamples, seed)
    return 100.0 * low, 100.0 * high


def seed_interval(
    values: np.ndarray, confidence: float = CONFIDENCE, resamples: int = RESAMPLES, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of one value per seed (NaN for fewer than two seeds or
    any NaN value)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2 or np.isnan(values).any():
        return float("nan"), float("nan")
    draws = np.random.default_rng(seed).integers(0, len(values), size=(resamples, len(values)))
    low, high = _quantiles(values[draws].mean(axis=1), confidence)
    return float(low), float(high)


def excludes_zero(low, high):
    """Whether an interval of a difference excludes 0 (scalars or arrays; NaN bounds: no): the mark of a
    difference the data can tell from none."""
    return (low > 0) | (high < 0)


def bootstrap_pvalue(differences: np.ndarray) -> float:
    """Two-sided p-value of "no difference" from bootstrap replicates of a difference: twice the smaller
    share of replicates at or beyond 0 on either side, each share counted as (count + 1) / (B + 1) so
    that it is never 0; at most 1."""
    below, above = int((differences <= 0).sum()), int((differences >= 0).sum())
    return min(1.0, 2 * (min(below, above) + 1) / (len(differences) + 1))


def paired_comparison(
    correct: np.ndarray,
    reference: np.ndarray,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict:
    """top-1(correct) − top-1(reference) in points on the same images (and seeds), with its interval and
    a paired test: McNemar's exact test and the interval that inverts it for one seed, the paired
    two-level bootstrap (interval and p-value from the same replicates) for several. Either way the
    interval excludes 0 exactly when p < 1 − confidence.

    Returns diff, diff_ci_low, diff_ci_high, p_value and test (mcnemar_exact | paired_bootstrap).
    """
    a, b = _per_seed(correct), _per_seed(reference)
    if a.shape != b.shape:
        raise ValueError(f"paired runs need the same seeds and images, got {a.shape} and {b.shape}")
    diff = 100.0 * float(a.mean() - b.mean())
    if a.shape[0] == 1:
        low, high = mcnemar_interval(a[0], b[0], confidence)
        p_value, test = mcnemar_exact(a[0], b[0]), "mcnemar_exact"
    else:
        replicates = two_level_bootstrap(a - b, resamples, seed)
        low, high = 100.0 * _quantiles(replicates, confidence)
        p_value, test = bootstrap_pvalue(replicates), "paired_bootstrap"
    return {"diff": diff, "diff_ci_low": float(low), "diff_ci_high": float(high), "p_value": p_value, "test": test}


def _discordant(correct: np.ndarray, reference: np.ndarray) -> tuple[int, int]:
    a, b = np.asarray(correct, bool), np.asarray(reference, bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"McNemar's test pairs one run per classifier on the same images, got {a.shape}, {b.shape}")
    return int((a & ~b).sum()), int((~a & b).sum())


def mcnemar_interval(correct: np.ndarray, reference: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The interval of top-1(correct) − top-1(reference) (points) that inverts McNemar's exact test: given the
    m discordant pairs of n images, the difference is (m/n)(2π − 1) with π the share of them that favour
    ``correct``, and π's exact (Clopper-Pearson) interval gives the bounds. The binomial at π = 1/2 is
    symmetric, so the interval excludes 0 exactly when the test's p < 1 − confidence."""
    gained, lost = _discordant(correct, reference)
    pairs, images = gained + lost, len(correct)
    if pairs == 0:
        return 0.0, 0.0
    from scipy import stats

    share = stats.binomtest(gained, pairs, 0.5).proportion_ci(confidence, method="exact")
    scale = 100.0 * pairs / images
    return scale * (2 * share.low - 1), scale * (2 * share.high - 1)


def mcnemar_exact(correct: np.ndarray, reference: np.ndarray) -> float:
    """McNemar's exact test of two classifiers on the same images: the two-sided binomial test of the
    discordant pairs (right for one and wrong for the other) against 1/2. 1.0 when there are none."""
    only_a, only_b = _discordant(correct, reference)
    if only_a + only_b == 0:
        return 1.0
    from scipy import stats

    return float(stats.binomtest(only_a, only_a + only_b, 0.5).pvalue)
