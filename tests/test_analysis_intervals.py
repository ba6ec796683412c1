"""The companion analyses' intervals and paired tests (report/analysis_intervals.py), recomputed by hand on
a few rows: masking by θ, head importance and its ranking, θ_KK − θ_NK per layer."""

from math import comb

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from patchinteract.report.analysis_intervals import (
    head_importance_intervals,
    theta_layer_differences,
    theta_masking_points,
    theta_masking_tests,
)
from patchinteract.report.retraining_tables import Uncertainty
from patchinteract.report.statistics import rank_interval

THETA = [1, 1, 1, 1, 1, 1, 1, 0, 0, 0]
RANDOM = {0: [0, 0, 0, 0, 0, 0, 1, 1, 0, 0], 1: THETA}  # seed 1 masks what θ masks: no discordant pair
FEW = Uncertainty(resamples=500)


def predictions() -> pd.DataFrame:
    rows = [("top", None, THETA), *(("random", seed, correct) for seed, correct in RANDOM.items())]
    images = np.arange(10)[::-1]  # in reverse order: the tables pair them by image_id, not by row
    frames = [
        pd.DataFrame({"r": 0.1, "order": order, "seed": seed, "image_id": images, "correct": correct[::-1]})
        for order, seed, correct in rows
    ]
    table = pd.concat(frames, ignore_index=True)
    table["seed"] = table["seed"].astype("Int64")
    return table


def test_each_masking_point_has_its_top1_inside_its_interval():
    table = pd.DataFrame(
        {"r": 0.1, "order": ["top", "random", "random"], "seed": pd.array([None, 0, 1], "Int64"), "top1": 0.0}
    )
    table["top1"] = [70.0, 20.0, 70.0]
    table["n_images"] = 10
    points = theta_masking_points(table, predictions(), FEW)
    assert list(points.columns) == ["r", "order", "seed", "top1", "top1_ci_low", "top1_ci_high", "n_images"]
    top = points[points["order"] == "top"].iloc[0]
    assert top["top1_ci_low"] < 70.0 < top["top1_ci_high"] and 0 <= top["top1_ci_low"] and top["top1_ci_high"] <= 100
    assert points["seed"].isna().sum() == 1  # the θ order's row kept its <NA> seed through the merge


def test_the_paired_test_against_each_random_mask_is_mcnemars_by_hand():
    tests = theta_masking_tests(predictions(), FEW)
    seed0 = tests[tests["control_seed"] == 0].iloc[0]
    # θ right and random wrong on images 0-5, the reverse on image 7: 6 against 1 of 7 discordant pairs.
    assert seed0["diff"] == pytest.approx(50.0)  # (7 - 2) of 10 images
    assert seed0["p_value"] == 2 * (comb(7, 0) + comb(7, 1)) / 2**7  # two-sided exact binomial: 0.125
    low_share, high_share = stats.beta.ppf(0.025, 6, 2), stats.beta.ppf(0.975, 7, 1)  # Clopper-Pearson of 6/7
    np.testing.assert_allclose(
        [seed0["diff_ci_low"], seed0["diff_ci_high"]], [70 * (2 * low_share - 1), 70 * (2 * high_share - 1)]
    )
    seed1 = tests[tests["control_seed"] == 1].iloc[0]
    assert (seed1["diff"], seed1["p_value"], seed1["diff_ci_low"], seed1["diff_ci_high"]) == (0.0, 1.0, 0.0, 0.0)
    over_seeds = tests[tests["control_seed"].isna()].iloc[0]
    assert over_seeds["diff"] == pytest.approx(25.0) and over_seeds["test"] == "paired_bootstrap"
    assert over_seeds["diff_ci_low"] < 25.0 < over_seeds["diff_ci_high"] and 0 < over_seeds["p_value"] <= 1


def importance_rows(values: np.ndarray) -> pd.DataFrame:
    """Whole-head rows (mode 1) of an importance table from ``values`` (images, heads) of layer 0, with
    pruned_prob = 1 − prob and cls_distance undefined (a model without prefix tokens)."""
    images, heads = values.shape
    frame = pd.DataFrame(
        {
            "image_id": np.repeat(np.arange(images), heads),
            "layer": 0,
            "head": np.tile(np.arange(heads), images),
            "mode": 1,
            "prob": values.ravel(),
        }
    )
    frame["pruned_prob"] = 1 - frame["prob"]
    frame["jsd"] = frame["patch_distance"] = frame["prob"]
    frame["cls_distance"] = np.nan
    return pd.concat([frame, frame.assign(mode=4, prob=0.0)], ignore_index=True)  # other modes are ignored


def test_head_importance_has_intervals_and_a_rank_interval_by_hand():
    rng = np.random.default_rng(0)
    # Head 0 leads in every image; heads 1 and 2 are the same but for noise, so neither ranks for sure.
    values = np.stack([np.full(40, 0.9), 0.3 + rng.normal(0, 0.05, 40), 0.3 + rng.normal(0, 0.05, 40)], axis=1)
    summary = head_importance_intervals(importance_rows(values), Uncertainty(resamples=4000), top_k=1)
    lead = summary.iloc[0]
    assert (lead["prob_ci_low"], lead["prob_ci_high"]) == pytest.approx((0.9, 0.9))  # constant: no spread
    assert (lead["prob_rank"], lead["prob_rank_low"], lead["prob_rank_high"], lead["prob_top_k"]) == (1, 1, 1, True)
    assert (lead["pruned_prob_rank"], lead["pruned_prob_top_k"]) == (1, True)  # lower left probability first
    noisy = summary.iloc[1:]
    assert (noisy["prob_rank_low"] == 2).all() and (noisy["prob_rank_high"] == 3).all()
    assert not noisy["prob_top_k"].any()
    # The interval of a mean over 40 images against scipy's percentile bootstrap (other draws: close, not equal).
    scipy = stats.bootstrap((values[:, 1],), np.mean, n_resamples=4000, method="percentile", random_state=1)
    np.testing.assert_allclose(
        [noisy.iloc[0]["prob_ci_low"], noisy.iloc[0]["prob_ci_high"]], scipy.confidence_interval, atol=2e-3
    )
    assert summary["cls_distance_ci_low"].isna().all() and not summary["cls_distance_top_k"].any()


def test_rank_intervals_take_ranks_that_occur():
    replicates = np.array([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0], [2.0, 3.0, 1.0], [3.0, 1.0, 2.0]])
    low, high = rank_interval(replicates, confidence=0.5)  # the 25 % and 75 % quantiles of each column's ranks
    # ranks per replicate: [1, 2, 3], [3, 2, 1], [2, 1, 3], [1, 3, 2]
    np.testing.assert_array_equal(low, [1, 1, 1])
    np.testing.assert_array_equal(high, [2, 2, 3])


def test_theta_kk_minus_nk_per_layer_pairs_images_that_have_both():
    rows = []
    for image in range(30):
        for layer in (0, 1):
            for head in (0, 1):
                kk = 0.2 + 0.1 * layer + 0.01 * head + 0.002 * image
                rows.append((image, layer, head, np.nan if image == 0 else kk, 0.2 + 0.001 * image))
    theta = pd.DataFrame(rows, columns=["image_id", "layer", "head", "theta_kk", "theta_nk"])
    table = theta_layer_differences(theta, Uncertainty(resamples=4000)).set_index("layer")
    assert table["images_paired"].eq(29).all()  # image 0 has no keypoint patch
    images = np.arange(1, 30)
    by_hand = {layer: 0.1 * layer + 0.005 + 0.001 * images for layer in (0, 1)}  # per image: mean over heads
    for layer, differences in by_hand.items():
        assert table.loc[layer, "kk_minus_nk"] == pytest.approx(differences.mean())
        scipy = stats.bootstrap((differences,), np.mean, n_resamples=4000, method="percentile", random_state=1)
        np.testing.assert_allclose(
            table.loc[layer, ["kk_minus_nk_ci_low", "kk_minus_nk_ci_high"]].to_numpy(float),
            scipy.confidence_interval,
            atol=5e-4,
        )
    assert table.loc[1, "p_value"] == pytest.approx(2 / 4001)  # every replicate above 0
