"""Bootstrap intervals cover a known rate at about the nominal rate; McNemar's exact test against the
textbook value. Every draw is seeded: these tests cannot flake."""

import math

import numpy as np
import pytest

from patchinteract.report.statistics import (
    accuracy_interval,
    difference_interval,
    mcnemar_exact,
    two_level_bootstrap,
)


def test_accuracy_interval_covers_the_true_rate_at_about_the_nominal_rate():
    rng = np.random.default_rng(123)
    rate, images, repetitions = 0.9, 400, 200
    covered = 0
    for repetition in range(repetitions):
        correct = rng.random(images) < rate
        low, high = accuracy_interval(correct, resamples=1000, seed=repetition)
        assert low <= 100 * correct.mean() <= high
        covered += low <= 100 * rate <= high
    # nominal 0.95; 200 repetitions have a binomial sd of 0.015: 3 sd either side
    assert 0.905 <= covered / repetitions <= 0.995


def test_two_level_interval_covers_the_mean_over_seeds_and_images():
    """Runs that differ by seed (each its own accuracy around the rate) on one shared val set."""
    rng = np.random.default_rng(7)
    rate, images, seeds, repetitions = 0.8, 300, 4, 150
    covered = 0
    for repetition in range(repetitions):
        per_seed = np.clip(rate + rng.normal(0, 0.02, seeds), 0, 1)  # run-to-run variation
        correct = rng.random((seeds, images)) < per_seed[:, None]
        low, high = accuracy_interval(correct, resamples=1000, seed=repetition)
        covered += low <= 100 * rate <= high
    # the two-level bootstrap of 4 seeds is a little narrow (few seeds): accept 0.85-0.995
    assert 0.85 <= covered / repetitions <= 0.995


def test_intervals_are_seeded_and_degenerate_samples_give_a_point():
    correct = np.random.default_rng(0).random(200) < 0.7
    assert accuracy_interval(correct, seed=3) == accuracy_interval(correct, seed=3)
    assert accuracy_interval(np.ones(50, bool)) == (100.0, 100.0)
    means = two_level_bootstrap(np.ones((3, 20)), resamples=10, seed=0)
    assert means.shape == (10,) and np.allclose(means, 1.0)


def test_mcnemar_exact_equals_the_textbook_value():
    # 10 pairs right only for A, 2 right only for B, 30 right for both, 8 wrong for both:
    # p = 2 * P(X <= 2), X ~ Binomial(12, 1/2) = 2 * (1 + 12 + 66) / 4096
    a = np.array([1] * 10 + [0] * 2 + [1] * 30 + [0] * 8, bool)
    b = np.array([0] * 10 + [1] * 2 + [1] * 30 + [0] * 8, bool)
    assert mcnemar_exact(a, b) == pytest.approx(2 * 79 / 4096, rel=1e-12)
    assert mcnemar_exact(b, a) == pytest.approx(2 * 79 / 4096, rel=1e-12)
    assert mcnemar_exact(a, a) == 1.0
    with pytest.raises(ValueError, match="same images"):
        mcnemar_exact(a, b[:-1])


def test_difference_interval_is_paired():
    rng = np.random.default_rng(5)
    reference = rng.random(500) < 0.8
    better = reference | (rng.random(500) < 0.1)  # right wherever the reference is, and on some more
    low, high = difference_interval(better, reference, seed=1)
    assert 0 < low <= 100 * (better.mean() - reference.mean()) <= high
    # paired, the interval is far narrower than that of two independent samples of the same size
    unpaired = math.sqrt(0.8 * 0.2 / 500 * 2) * 1.96 * 2 * 100
    assert high - low < unpaired / 2
    with pytest.raises(ValueError, match="same seeds and images"):
        difference_interval(better[None], np.stack([reference, reference]))
