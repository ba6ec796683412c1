"""Attention store contract, resume after SIGKILL, and the streaming path (attention.store: none)."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import zarr
from test_interaction import reference_u

from patchinteract.attention.extraction import write_attention_store, write_interaction_store_streaming
from patchinteract.interaction.interaction_store import compute_interaction_store
from patchinteract.stores.chunked import folder_bytes

SETUP = """
import time, torch
import patchinteract
from patchinteract.models.vit import create_vit
from patchinteract.models.transforms import eval_transform
from patchinteract.data.manifest import split_dataset

torch.manual_seed(0)
torch.set_num_threads(1)
model = create_vit("VisionTransformer", 16, 4, 10, {"embed_dim": 32, "depth": 3, "num_heads": 2}).eval()
transform = eval_transform(model)
DELAY = float(ARGV[3]) if len(ARGV) > 3 else 0.0

def slow_transform(image):  # slows the run so the test can kill it part-way
    time.sleep(DELAY)
    return transform(image)

dataset = split_dataset(ARGV[1], "train", slow_transform)
"""

WRITE_STORE = (
    "import sys\nARGV = sys.argv\n"
    + SETUP
    + """
from patchinteract.attention.extraction import write_attention_store
write_attention_store(model, dataset, ARGV[2], device=torch.device("cpu"), batch_size=4, workers=0,
                      chunk_setting=2, compression_level=3, attributes={"experiment": "test"})
"""
)


def run_script(code, *args):
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *map(str, args)])


def load_model_and_dataset(manifest):
    """The same seeded model and dataset as the scripts, in this process."""
    namespace = {"ARGV": ["", str(manifest)]}
    exec(SETUP, namespace)
    return namespace["model"], namespace["dataset"]


def test_store_layout_and_u_on_real_images(tmp_path, digits_manifest):
    model, dataset = load_model_and_dataset(digits_manifest)
    import torch

    path = write_attention_store(
        model,
        dataset,
        tmp_path / "train.zarr",
        device=torch.device("cpu"),
        batch_size=8,
        workers=0,
        chunk_setting=3,
        compression_level=3,
        attributes={"experiment": "test"},
    )
    store = zarr.open_group(path, mode="r")
    attn = store["attn"]
    assert attn.shape == (36, 3, 2, 17, 17) and attn.chunks == (3, 3, 2, 17, 17) and attn.dtype == np.float16
    assert store["label"].chunks == (36,) and "chunk_complete" not in store  # consolidated at the end
    assert attn.metadata.dimension_names == ("image", "layer", "head", "query", "key")
    assert store.attrs["n_prefix_tokens"] == 1 and store.attrs["grid"] == [4, 4]
    assert store.attrs["experiment"] == "test"
    np.testing.assert_array_equal(store["image_id"][:], dataset.image_ids)
    np.testing.assert_array_equal(store["label"][:], dataset.labels)
    np.testing.assert_allclose(attn[:].astype(np.float32).sum(-1), 1.0, atol=1e-2)

    out = compute_interaction_store(path, tmp_path / "u.zarr", dask_mode="threads", workers=2)
    u = zarr.open_group(out, mode="r")["U"][:]
    expected = reference_u(attn[:], 1)
    np.testing.assert_allclose(u, expected, rtol=1e-4, atol=1e-6 * expected.max())


def test_a_rounded_store_keeps_within_its_stated_error_and_is_smaller(tmp_path, digits_manifest):
    import torch

    model, dataset = load_model_and_dataset(digits_manifest)
    settings = dict(device=torch.device("cpu"), batch_size=8, workers=0, chunk_setting=6, compression_level=1)
    exact_path = write_attention_store(model, dataset, tmp_path / "exact.zarr", attributes={}, **settings)
    rounded_path = write_attention_store(
        model, dataset, tmp_path / "rounded.zarr", attributes={}, mantissa_bits=6, **settings
    )
    exact, rounded = zarr.open_group(exact_path, mode="r"), zarr.open_group(rounded_path, mode="r")
    assert "mantissa_bits" not in exact.attrs
    assert rounded.attrs["mantissa_bits"] == 6 and rounded.attrs["max_relative_error"] == 2.0**-7
    a, b = exact["attn"][:].astype(np.float64), rounded["attn"][:].astype(np.float64)
    normal = a >= 2.0**-14
    assert (a != b).mean() > 0.5  # 4 of 10 bits dropped: most values change
    assert np.all(np.abs(b - a)[normal] <= 2.0**-7 * a[normal])
    assert np.all(np.abs(b - a)[~normal] <= 2.0**-7 * 2.0**-14)
    assert folder_bytes(rounded_path / "attn") < 0.85 * folder_bytes(exact_path / "attn")

    # Rows still pass U's sum check; how far U moves is measured on trained attention (bench_store_rounding:
    # this untrained model's U is at float16's own rounding noise).
    u_rounded = zarr.open_group(compute_interaction_store(rounded_path, tmp_path / "u.zarr"), mode="r")
    assert u_rounded.attrs["mantissa_bits"] == 6  # provenance travels to U


def test_killed_extraction_resumes_to_an_identical_store(tmp_path, digits_manifest):
    one_go = run_script(WRITE_STORE, digits_manifest, tmp_path / "once.zarr")
    assert one_go.wait(timeout=300) == 0

    target = tmp_path / "resumed.zarr"
    partial = tmp_path / "resumed.zarr.partial"
    process = run_script(WRITE_STORE, digits_manifest, target, 0.05)
    written = 0
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if (partial / "chunk_complete" / "zarr.json").exists():
            written = int(zarr.open_group(partial, mode="r")["chunk_complete"][:].sum())
            if written >= 3:
                os.kill(process.pid, signal.SIGKILL)
                break
        time.sleep(0.05)
    assert process.wait(timeout=60) == -signal.SIGKILL, "the run ended before it could be killed"
    done_at_kill = int(zarr.open_group(partial, mode="r")["chunk_complete"][:].sum())
    assert 3 <= done_at_kill < 18 and not target.exists()

    assert run_script(WRITE_STORE, digits_manifest, target).wait(timeout=300) == 0
    once, resumed = zarr.open_group(tmp_path / "once.zarr", mode="r"), zarr.open_group(target, mode="r")
    assert dict(once.attrs) == dict(resumed.attrs)
    for name in ("attn", "label", "prediction", "image_id"):
        np.testing.assert_array_equal(once[name][:], resumed[name][:])
    assert not partial.exists()


def test_streaming_u_equals_the_store_path(tmp_path, digits_manifest):
    import torch

    model, dataset = load_model_and_dataset(digits_manifest)
    options = dict(device=torch.device("cpu"), batch_size=5, workers=0, compression_level=3)
    attention = write_attention_store(model, dataset, tmp_path / "a.zarr", attributes={}, chunk_setting=4, **options)
    from_store = zarr.open_group(compute_interaction_store(attention, tmp_path / "u.zarr"), mode="r")
    streamed = zarr.open_group(
        write_interaction_store_streaming(model, dataset, tmp_path / "s.zarr", attributes={}, **options), mode="r"
    )
    for name in ("label", "prediction", "image_id"):
        np.testing.assert_array_equal(from_store[name][:], streamed[name][:])
    for name in ("U", "dip_score"):  # the same equations, computed on the model's device in float32
        np.testing.assert_allclose(streamed[name][:], from_store[name][:], rtol=1e-5, atol=1e-12)
    for name in ("U", "dip_score", "label", "prediction", "image_id"):
        assert from_store[name].chunks == streamed[name].chunks
    assert dict(from_store.attrs) == dict(streamed.attrs)
