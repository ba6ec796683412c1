"""The explorer's data: what the page receives (its browser test runs on the tiny run in test_workflow.py)."""

import base64

import numpy as np
import pytest

from patchinteract.report.explorer import dequantised_rows, encode_array, explorer_images, quantised_rows


def test_rows_survive_the_uint8_transport_within_half_a_step():
    rng = np.random.default_rng(0)
    attention = rng.dirichlet(np.ones(17), size=(2, 3, 17)).astype(np.float32)
    attention[0, 0, 0] = 0.0  # an all-zero row stays zero
    encoded = quantised_rows(attention)
    shown = dequantised_rows(encoded)
    assert shown.shape == attention.shape
    bound = attention.max(axis=-1, keepdims=True) / 510 + 1e-7
    assert np.all(np.abs(shown - attention) <= bound)
    assert np.all(shown[0, 0, 0] == 0)
    assert np.abs(shown - attention).max() > 0  # it is a quantisation, not a copy
    assert len(base64.b64decode(encoded["q"])) == attention.size  # one byte per entry


def test_arrays_travel_as_little_endian_bytes():
    values = np.array([1.5, -2.0, 3.25], dtype=">f4")  # big-endian in memory
    assert np.array_equal(np.frombuffer(base64.b64decode(encode_array(values, "float32")), "<f4"), values)


def test_explorer_images_are_the_first_of_the_analysed_ones():
    analysed = np.array([40, 12, 7, 99])
    assert explorer_images(analysed, "all").tolist() == [40, 12, 7, 99]
    assert explorer_images(analysed, 2).tolist() == [40, 12]
    with pytest.raises(ValueError, match="explorer.images"):
        explorer_images(analysed, 0)


def test_an_undefined_importance_metric_has_no_band_and_no_star():
    """I_CLS of a model without a prefix token is NaN in the head summary: the page's band has None there (valid
    JSON, drawn as a gap), not 0, and no head is starred for it."""
    import json

    import pandas as pd

    from patchinteract.analyses.heads.head_tables import IMPORTANCE_VIEWS
    from patchinteract.report.explorer.data import importance_band

    summary = pd.DataFrame({"layer": [1, 0], "head": [0, 0]})
    for metric in IMPORTANCE_VIEWS:
        undefined = metric == IMPORTANCE_VIEWS[0]
        for column, values in {
            "mean": [0.5, 0.25],
            "std": [0.1, 0.1],
            "ci_low": [0.4, 0.2],
            "ci_high": [0.6, 0.3],
        }.items():
            summary[f"{metric}_{column}"] = [np.nan, np.nan] if undefined else values
        summary[f"{metric}_top_k"] = [np.nan, np.nan] if undefined else [True, False]
    band = importance_band(summary)
    undefined, defined = band[IMPORTANCE_VIEWS[0]], band[IMPORTANCE_VIEWS[1]]
    assert undefined["mean"] == undefined["low"] == undefined["high"] == [None, None]
    assert undefined["top_k"] == [False, False]
    assert defined["mean"] == [0.25, 0.5] and defined["top_k"] == [False, True]  # layer-major order
    json.loads(json.dumps(band), parse_constant=lambda name: pytest.fail(f"{name} in the page's JSON"))
