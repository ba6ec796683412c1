"""U (eq. 2-3) and dip_score against a float64 NumPy reference; invalid attention; Dask path; the device path."""

import dask.array as da
import numpy as np
import pytest
import torch
import zarr

from patchinteract.interaction.interaction_store import compute_interaction_store, interaction_arrays
from patchinteract.interaction.maps import (
    AttentionValueError,
    check_attention_rows,
    dip_score,
    interaction_map,
    interaction_map_on_device,
)


def random_attention(rng, images=3, layers=4, heads=3, prefix=1, n=16, dtype=np.float16):
    logits = rng.normal(scale=2.0, size=(images, layers, heads, prefix + n, prefix + n))
    attn = np.exp(logits)
    return (attn / attn.sum(-1, keepdims=True)).astype(dtype)


def write_attention_group(path, attn, chunk=2):
    """A minimal attention store: attn chunked by `chunk` images, per-image arrays, attributes."""
    group = zarr.open_group(path, mode="w")
    group.attrs.update({"n_prefix_tokens": 1, "grid": [4, 4]})
    group.create_array("attn", data=attn, chunks=(chunk, *attn.shape[1:]))
    for name in ("label", "prediction", "image_id"):
        group.create_array(name, data=np.arange(len(attn)), chunks=(chunk,))


def reference_u(attn, prefix):
    """Eq. 2-3 written out literally in float64."""
    a = attn.astype(np.float64)[..., prefix:, prefix:]
    layers, heads = a.shape[1], a.shape[2]
    e_a = a.sum(axis=1) / layers
    u_layers = ((a - e_a[:, None]) ** 2).sum(axis=1) / layers
    e_u = u_layers.sum(axis=1) / heads
    return ((u_layers - e_u[:, None]) ** 2).sum(axis=1) / heads


@pytest.mark.parametrize("prefix", [1, 2])
def test_u_matches_float64_reference(prefix):
    attn = random_attention(np.random.default_rng(prefix), prefix=prefix)
    u = interaction_map(attn, prefix)
    expected = reference_u(attn, prefix)
    assert u.dtype == np.float32 and u.shape == (3, 16, 16)
    np.testing.assert_allclose(u, expected, rtol=1e-4, atol=1e-7 * expected.max())
    # The patch block is the last N tokens: the first N (prefix included) give another answer.
    assert not np.allclose(u, reference_u(attn[..., :-prefix, :-prefix], 0), rtol=1e-2)


def test_dip_score_is_column_variance_over_rows():
    u = np.random.default_rng(0).random((2, 9, 9)).astype(np.float32)
    expected = np.array([[np.var(u[i, :, p].astype(np.float64)) for p in range(9)] for i in range(2)])
    np.testing.assert_allclose(dip_score(u), expected, rtol=1e-5)


def test_nan_attention_is_rejected_with_its_location():
    attn = random_attention(np.random.default_rng(1))
    attn[2, 1, 0, 5, 3] = np.nan
    with pytest.raises(AttentionValueError, match=r"image 12, layer 1, head 0, query 5"):
        interaction_map(attn, 1, first_image=10)


def test_rows_not_summing_to_one_are_rejected():
    attn = random_attention(np.random.default_rng(2))
    attn[0, 0, 0, 0] *= 0.5
    with pytest.raises(AttentionValueError, match="sums to"):
        check_attention_rows(attn)
    check_attention_rows(random_attention(np.random.default_rng(3)))  # valid: no error


def test_dask_u_equals_direct_kernel_and_store(tmp_path):
    attn = random_attention(np.random.default_rng(4), images=7)
    lazy_u, lazy_dip = interaction_arrays(da.from_array(attn, chunks=(3, -1, -1, -1, -1)), 1)
    np.testing.assert_array_equal(lazy_u.compute(), interaction_map(attn, 1))
    np.testing.assert_array_equal(lazy_dip.compute(), dip_score(interaction_map(attn, 1)))

    write_attention_group(tmp_path / "a.zarr", attn)
    out = compute_interaction_store(tmp_path / "a.zarr", tmp_path / "u.zarr", dask_mode="threads", workers=2)
    stored = zarr.open_group(out, mode="r")
    np.testing.assert_array_equal(stored["U"][:], interaction_map(attn, 1))
    assert stored["U"].metadata.dimension_names == ("image", "query", "key")
    assert stored["dip_score"].shape == (7, 16) and stored.attrs["grid"] == [4, 4]
    assert not (tmp_path / "u.zarr.partial").exists()


@pytest.mark.slow
def test_local_cluster_gives_the_same_store_as_threads(tmp_path):
    write_attention_group(tmp_path / "a.zarr", random_attention(np.random.default_rng(6), images=5))
    threads = compute_interaction_store(tmp_path / "a.zarr", tmp_path / "t.zarr", dask_mode="threads", workers=2)
    cluster = compute_interaction_store(tmp_path / "a.zarr", tmp_path / "c.zarr", dask_mode="local", workers=2)
    for name in ("U", "dip_score", "image_id"):
        np.testing.assert_array_equal(zarr.open_group(threads)[name][:], zarr.open_group(cluster)[name][:])


def test_dask_path_reports_invalid_attention(tmp_path):
    attn = random_attention(np.random.default_rng(5), images=4)
    attn[3, 0, 0, 2] = 0
    write_attention_group(tmp_path / "a.zarr", attn)
    with pytest.raises(AttentionValueError, match="image 3"):
        compute_interaction_store(tmp_path / "a.zarr", tmp_path / "u.zarr")
    assert not (tmp_path / "u.zarr").exists()


@pytest.mark.parametrize("images_per_step", [1, 3, 8])
def test_u_on_the_model_device_equals_the_store_path(images_per_step):
    """The streaming path (whole images at a time, in float32 on the tensor's device; here the CPU)."""
    attn = random_attention(np.random.default_rng(7), images=5, prefix=2)
    on_device, score = interaction_map_on_device(torch.from_numpy(attn), 2, images_per_step=images_per_step)
    assert on_device.dtype == torch.float32 and on_device.shape == (5, 16, 16)
    np.testing.assert_allclose(on_device.numpy(), interaction_map(attn, 2), rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(score.numpy(), dip_score(interaction_map(attn, 2)), rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(on_device.numpy(), reference_u(attn, 2), rtol=1e-4, atol=1e-7)


def test_u_on_the_model_device_rejects_invalid_rows_with_their_location():
    attn = random_attention(np.random.default_rng(8), images=4)
    attn[3, 2, 1, 7, 0] = np.inf
    with pytest.raises(AttentionValueError, match=r"image 23, layer 2, head 1, query 7"):
        interaction_map_on_device(torch.from_numpy(attn), 1, first_image=20, images_per_step=2)
