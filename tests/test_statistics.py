"""Bootstrap intervals cover a known rate at about the nominal rate; McNemar's exact test against the
textbook value. Every draw is seeded: these tests cannot flake."""

import math

import numpy as np
import pytest

from patchinteract.report.statistics import (
    accuracy_interval,
    bootstrap_pvalue,
    mcnemar_exact,
    mcnemar_interval,
    paired_comparison,
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
    """Runs that differ by seed (each its own accuracy around the rate) on one shared val set. Resampling
    seeds and images independently (a crossed design) is conservative: coverage at or above the nominal
    rate, with intervals somewhat wider than those of the known variance, but not much."""
    rng = np.random.default_rng(7)
    rate, images, seeds, repetitions, spread = 0.8, 300, 4, 150, 0.02
    covered, widths = 0, []
    for repetition in range(repetitions):
        per_seed = np.clip(rate + rng.normal(0, spread, seeds), 0, 1)  # run-to-run variation
        correct = rng.random((seeds, images)) < per_seed[:, None]
        low, high = accuracy_interval(correct, resamples=1000, seed=repetition)
        covered += low <= 100 * rate <= high
        widths.append(high - low)
    assert covered / repetitions >= 0.9  # nominal 0.95, 3 binomial sd below it
    ideal = 2 * 1.96 * 100 * math.sqrt(rate * (1 - rate) / (seeds * images) + spread**2 / seeds)
    assert ideal < np.mean(widths) < 1.5 * ideal  # measured 1.32x


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


def test_paired_comparison_is_paired():
    rng = np.random.default_rng(5)
    reference = rng.random(500) < 0.8
    better = reference | (rng.random(500) < 0.1)  # right wherever the reference is, and on some more
    result = paired_comparison(better, reference, seed=1)
    low, high = result["diff_ci_low"], result["diff_ci_high"]
    assert 0 < low <= result["diff"] == 100 * (better.mean() - reference.mean()) <= high
    gained = int((better & ~reference).sum())  # every discordant pair favours `better`: p = 2 / 2^pairs
    assert result["test"] == "mcnemar_exact" and result["p_value"] == pytest.approx(2 / 2**gained, rel=1e-12)
    # paired, the interval is far narrower than that of two independent samples of the same size
    unpaired = math.sqrt(0.8 * 0.2 / 500 * 2) * 1.96 * 2 * 100
    assert high - low < unpaired / 2
    with pytest.raises(ValueError, match="same seeds and images"):
        paired_comparison(better[None], np.stack([reference, reference]))


def test_mcnemar_interval_excludes_zero_exactly_when_the_test_rejects():
    rng = np.random.default_rng(3)
    agreements = 0
    for _ in range(300):
        reference = rng.random(120) < 0.8
        flips = rng.random(120) < rng.uniform(0.02, 0.15)
        correct = reference ^ (flips & (rng.random(120) < rng.uniform(0.2, 0.8)))
        low, high = mcnemar_interval(correct, reference)
        diff = 100 * (correct.mean() - reference.mean())
        assert low - 1e-9 <= diff <= high + 1e-9  # equal at a bound when every pair favours one side
        agreements += (low > 0 or high < 0) == (mcnemar_exact(correct, reference) < 0.05)
    assert agreements == 300
    # 10 pairs all favouring one side: (10/50)(2π − 1) with π's Clopper-Pearson interval [0.6915, 1]
    a, b = np.array([1] * 10 + [0] * 40, bool), np.zeros(50, bool)
    assert mcnemar_interval(a, b) == pytest.approx((20 * (2 * 0.691503 - 1), 20.0), abs=1e-4)
    assert mcnemar_interval(b, b) == (0.0, 0.0)


def test_paired_bootstrap_over_seeds_agrees_with_its_interval():
    rng = np.random.default_rng(11)
    reference = rng.random((3, 400)) < 0.8
    same = paired_comparison(reference[::-1], reference, seed=2)  # the same runs in another seed order
    assert same["test"] == "paired_bootstrap" and same["diff"] == pytest.approx(0.0, abs=1e-12)
    assert same["diff_ci_low"] <= 0 <= same["diff_ci_high"] and same["p_value"] > 0.05
    worse = reference & (rng.random((3, 400)) < 0.9)  # wrong on a tenth of the reference's right images
    result = paired_comparison(worse, reference, seed=2)
    assert result["diff_ci_high"] < 0 and result["p_value"] < 0.05
    assert paired_comparison(worse, reference, seed=2) == result  # seeded


def test_bootstrap_pvalue_counts_both_tails():
    assert bootstrap_pvalue(np.ones(99)) == pytest.approx(2 / 100)  # never 0: (0 + 1) / (B + 1), twice
    assert bootstrap_pvalue(np.linspace(-1, 1, 101)) == 1.0
    assert bootstrap_pvalue(np.r_[-np.ones(10), np.ones(89)]) == pytest.approx(2 * 11 / 100)
