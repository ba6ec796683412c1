"""Several ranks for one job (torch.distributed, gloo on CPU): training takes the same steps as one process,
inference writes the same stores and tables."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from patchinteract.masks.tokens import kept_patches
from patchinteract.masks.windows import attention_windows
from patchinteract.models.masked import MaskedViT
from patchinteract.models.vit import create_vit
from patchinteract.models.winft import WindowFreeAttention, WindowFreeViT
from patchinteract.ranks import Ranks, launch, rank_block
from patchinteract.training.evaluation import evaluate_classifier
from patchinteract.training.loop import Recipe, TrainingLoop, reconstruction, seed_everything

GRID = (4, 4)
IMAGES = 24


class TinySamples(torch.utils.data.Dataset):
    """Seeded random images, labels, ids and the masks of one kind of branch."""

    def __init__(self, kind: str):
        generator = torch.Generator().manual_seed(7)
        self.images = torch.randn(IMAGES, 3, 16, 16, generator=generator)
        self.labels = torch.randint(0, 10, (IMAGES,), generator=generator)
        self.image_ids = np.arange(IMAGES)
        rng = np.random.default_rng(7)
        u = rng.random((IMAGES, 16, 16)).astype(np.float32)
        if kind == "awd_dip":
            keep = kept_patches(rng.random((IMAGES, 16)).astype(np.float32), 0.25)
            self.masks = [torch.from_numpy(attention_windows(u, 0.2, GRID)), torch.from_numpy(keep)]
        elif kind == "winft":
            self.masks = [torch.from_numpy(attention_windows(u, 0.2, GRID))]
        else:
            self.masks = []

    def __len__(self):
        return IMAGES

    def __getitem__(self, index):
        return self.images[index], self.labels[index], index, *(mask[index] for mask in self.masks)


def tiny_model(kind: str):
    seed_everything(0)
    layer = {"attn_layer": WindowFreeAttention} if kind == "winft" else {}
    vit = create_vit("VisionTransformer", 16, 4, 10, {"embed_dim": 32, "depth": 2, "num_heads": 2, **layer})
    if kind == "winft":
        return WindowFreeViT(vit, target_kind="box")
    return MaskedViT(vit, dip_mode="multiply")


def train_tiny(kind: str, accumulation: int, checkpoint: str | None = None) -> dict:
    """Train the tiny model of a kind of branch (run on every rank); rank 0's weights, losses, evaluation.
    SGD, as the paper: Adam would turn the float noise of an exactly zero gradient (the key bias) into
    steps of the learning rate."""
    model, samples = tiny_model(kind), TinySamples(kind)
    recipe = Recipe.from_config(
        {"epochs": 2, "lr": 1e-2, "batch_size": 8, "optimizer": "sgd", "accumulation_steps": accumulation}
    )
    training = TrainingLoop(model, samples, recipe, torch.device("cpu"), seed=3, checkpoint=checkpoint, fingerprint="t")
    summary = training.run()
    block = rank_block(samples)  # as retraining evaluates: this rank's consecutive block
    windows = None
    if kind == "winft":
        from patchinteract.training.evaluation import WindowRecorder

        windows = WindowRecorder(model, keep_first=3)
    metrics, predictions = evaluate_classifier(
        model, torch.utils.data.DataLoader(block, batch_size=5), torch.device("cpu"), windows
    )
    weights = {name: value.detach().clone() for name, value in model.state_dict().items()}
    return {
        "summary": summary,
        "losses": training.step_losses,
        "weights": weights,
        "metrics": metrics,
        "predictions": predictions,
    }


TRAINING_CASES = [("awd_dip", 1), ("winft", 1), ("vit", 2)]


def on_two_ranks(folder: str) -> dict:
    """What the tests below compare with one process (the ``launch(..., 1, ...)`` they run here), computed on
    two ranks in one launch: each rank is a fresh interpreter that imports torch and timm (~3 s of CPU), so
    one launch for all, not one per test. Each part seeds itself, as it would in a job of its own."""
    results = {("train", *case): train_tiny(*case) for case in TRAINING_CASES}
    results |= {("store", kind): tiny_store(kind, f"{folder}/{kind}.zarr") for kind in STORE_ARRAYS}
    results["importance"] = importance_tables()
    results["mae"] = pretrain_tiny()
    results["figure store"] = figure_store_of_rank_zero(f"{folder}/figure.zarr")
    return results


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> dict:
    return launch(on_two_ranks, 2, "cpu", str(tmp_path_factory.mktemp("two_ranks")))


@pytest.mark.parametrize(("kind", "accumulation"), TRAINING_CASES)
def test_two_ranks_take_the_steps_of_one_process(two_ranks, kind, accumulation):
    one = launch(train_tiny, 1, "cpu", kind, accumulation)
    two = two_ranks["train", kind, accumulation]
    assert one["summary"]["steps"] == two["summary"]["steps"] == 2 * -(-3 // accumulation)  # 2 epochs of 3 batches
    np.testing.assert_allclose(two["losses"], one["losses"], rtol=0, atol=1e-5)
    for name, value in one["weights"].items():
        torch.testing.assert_close(two["weights"][name], value, rtol=0, atol=1e-5, msg=name)
    assert two["predictions"]["image_id"].tolist() == list(range(IMAGES))
    assert two["predictions"]["prediction"].tolist() == one["predictions"]["prediction"].tolist()
    assert two["metrics"]["top1"] == one["metrics"]["top1"] and two["metrics"]["n_images"] == IMAGES
    if kind == "winft":
        assert two["metrics"]["eo"] == pytest.approx(one["metrics"]["eo"], abs=1e-4)
        np.testing.assert_array_equal(two["metrics"]["figure"]["image_id"], [0, 1, 2])


class SlowSamples(TinySamples):
    """TinySamples that take a while each and say, per rank, that training runs (for a signal mid-run)."""

    def __init__(self, kind: str, marker: str):
        super().__init__(kind)
        self.marker = marker

    def __getitem__(self, index):
        import os

        # Written whole (a rename) and once: the test reads the pid while the samples are being loaded.
        marker = Path(f"{self.marker}.rank{Ranks.current().rank}")
        if not marker.exists():
            partial = marker.with_name(f"{marker.name}.{os.getpid()}.partial")
            partial.write_text(str(os.getpid()))
            partial.replace(marker)
        __import__("time").sleep(0.05)
        return super().__getitem__(index)


def train_slowly(checkpoint: str, marker: str) -> dict:
    """The awd_dip run of train_tiny on slow samples, for 4 epochs; rank 0's weights."""
    model, samples = tiny_model("awd_dip"), SlowSamples("awd_dip", marker)
    recipe = Recipe.from_config({"epochs": 4, "lr": 1e-2, "batch_size": 8})
    training = TrainingLoop(model, samples, recipe, torch.device("cpu"), seed=3, checkpoint=checkpoint, fingerprint="t")
    summary = training.run()
    return {"summary": summary, "weights": {name: value.clone() for name, value in model.state_dict().items()}}


RESUMABLE = """
import sys, torch
sys.path.insert(0, {tests!r})
from patchinteract.ranks import launch
from test_ranks import train_slowly
result = launch(train_slowly, {ranks}, "cpu", {checkpoint!r}, {marker!r})
torch.save(result, {out!r})
"""


def run_ranks(tmp_path, ranks: int, name: str):
    import subprocess
    import sys

    script = RESUMABLE.format(
        tests=str(Path(__file__).parent),
        ranks=ranks,
        checkpoint=str(tmp_path / "c.pt"),
        marker=str(tmp_path / "running"),
        out=str(tmp_path / f"{name}.pt"),
    )
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def interrupted_on_two_ranks(tmp_path_factory):
    """A run on two ranks stopped by SIGTERM to rank 1 in its first epoch (its checkpoint ``c.pt`` in the folder),
    and the reference run of one process; the folder."""
    import signal
    import time

    folder = tmp_path_factory.mktemp("interrupted")
    reference = launch(train_slowly, 1, "cpu", str(folder / "reference.pt"), str(folder / "reference"))
    interrupted = run_ranks(folder, 2, "interrupted")
    marker = folder / "running.rank1"
    deadline = time.monotonic() + 120
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)  # into the first epoch
    __import__("os").kill(int(marker.read_text()), signal.SIGTERM)
    output = interrupted.communicate(timeout=300)[0]
    assert interrupted.returncode != 0 and "TrainingInterrupted" in output, output[-3000:]
    return folder, reference


@pytest.mark.parametrize("resume_ranks", [2, 1])
def test_sigterm_to_one_rank_checkpoints_and_the_resumed_run_ends_the_same(
    interrupted_on_two_ranks, tmp_path, resume_ranks
):
    import shutil

    folder, reference = interrupted_on_two_ranks
    shutil.copy(folder / "c.pt", tmp_path / "c.pt")  # each resume from the same checkpoint
    state = torch.load(tmp_path / "c.pt", weights_only=False)
    assert 0 < state["position"]["step"] < reference["summary"]["steps"]
    resumed = run_ranks(tmp_path, resume_ranks, "resumed")
    output = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, output[-3000:]
    result = torch.load(tmp_path / "resumed.pt", weights_only=False)
    assert result["summary"]["resumed_from_step"] == state["position"]["step"]
    for name, value in reference["weights"].items():
        torch.testing.assert_close(result["weights"][name], value, rtol=0, atol=1e-5, msg=name)


class LabelledImages(torch.utils.data.Dataset):
    """Seeded random images with labels and ids, as a split's dataset yields them; asked for one of
    ``refused``, it fails (an interrupted job, or a resumed one that should not load it again)."""

    def __init__(self, refused=()):
        self.images = torch.randn(IMAGES, 3, 16, 16, generator=torch.Generator().manual_seed(5))
        self.refused = frozenset(refused)

    def __len__(self):
        return IMAGES

    def __getitem__(self, index):
        if index in self.refused:
            raise RuntimeError(f"image {index} refused")
        return self.images[index], index % 10, index


def tiny_store(kind: str, path: str, refused=()) -> str:
    """The tiny ViT's attention store of 24 images in chunks of 2, or its streamed U and dip_score (one
    chunk), run on every rank."""
    from patchinteract.attention.extraction import write_attention_store, write_interaction_store_streaming

    write, options = write_interaction_store_streaming, {}
    if kind == "attention":
        write, options = write_attention_store, {"chunk_setting": 2}
    model = tiny_model("vit").vit.eval()
    settings = {"batch_size": 5, "workers": 0, "compression_level": 1, "attributes": {}}
    return str(write(model, LabelledImages(refused), path, device=torch.device("cpu"), **settings, **options))


STORE_ARRAYS = {"attention": ["attn"], "interaction": ["U", "dip_score"]}


@pytest.mark.parametrize("kind", ["attention", "interaction"])
def test_two_ranks_write_the_store_of_one(two_ranks, tmp_path, kind):
    """Each rank computes its block of the pending chunks of one store: the same arrays as one process. The
    streamed U store is one chunk: rank 1 has nothing to write and waits for rank 0."""
    import zarr

    one = zarr.open_group(launch(tiny_store, 1, "cpu", kind, str(tmp_path / "one.zarr")), mode="r")
    two = zarr.open_group(two_ranks["store", kind], mode="r")
    assert not Path(two_ranks["store", kind] + ".partial").exists()
    for name in [*STORE_ARRAYS[kind], "image_id", "label", "prediction"]:
        np.testing.assert_array_equal(two[name][:], one[name][:], err_msg=name)


@pytest.mark.parametrize("interrupted_on", [2, 1])
def test_a_store_interrupted_on_some_ranks_resumes_its_pending_chunks_on_two(tmp_path, interrupted_on):
    """A store job fails at image 18 (in rank 1's block with two ranks; batches of 5, chunks of 2) and is
    resumed on two ranks: they load no image of a complete chunk and the store is that of one process."""
    import zarr
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    path = str(tmp_path / "store.zarr")
    with pytest.raises((RuntimeError, ChildFailedError)):
        launch(tiny_store, interrupted_on, "cpu", "attention", path, range(18, IMAGES))
    complete = np.flatnonzero(zarr.open_group(path + ".partial", mode="r")["chunk_complete"][:])
    assert 6 in complete and not {8, 9} & set(complete)  # chunk 8 waits for image 17, in the failed batch
    resumed = zarr.open_group(
        launch(tiny_store, 2, "cpu", "attention", path, [2 * c + i for c in complete for i in (0, 1)])
    )
    one = zarr.open_group(launch(tiny_store, 1, "cpu", "attention", str(tmp_path / "one.zarr")), mode="r")
    for name in ("attn", "image_id", "label", "prediction"):
        np.testing.assert_array_equal(resumed[name][:], one[name][:], err_msg=name)


def importance_tables():
    """The tiny ViT's head importance on 24 images (run on every rank)."""
    from patchinteract.analyses.heads.pruning import head_importance

    return head_importance(
        tiny_model("vit").vit,
        LabelledImages(),
        device=torch.device("cpu"),
        batch_images=5,
        variants_per_pass=256,
        activation="attention_output",
    )


def test_two_ranks_give_the_head_importance_tables_of_one(two_ranks):
    """Each rank prunes the heads on its block of the images: the tables of one process, value for value."""
    one, two = launch(importance_tables, 1, "cpu"), two_ranks["importance"]
    assert len(two[0]) == IMAGES * 2 * 2 * 6 and len(two[1]) == IMAGES
    for rank_table, table in zip(two, one, strict=True):
        pd.testing.assert_frame_equal(rank_table, table, check_exact=True)


def figure_store_of_rank_zero(path: str) -> str:
    """A store written in one go by rank 0 alone, as a WinFT job writes its figure store (run on every rank)."""
    from patchinteract.stores.chunked import write_arrays
    from patchinteract.stores.specs import winft_figure_specs

    if Ranks.current().main:
        arrays = {"predicted": np.ones((2, 2, 4, 4), bool), "target": np.eye(4, dtype=bool)[None].repeat(2, 0)}
        write_arrays(path, arrays | {"image_id": np.arange(2)}, winft_figure_specs(2, 4), {})
    return path


def test_a_store_written_in_one_go_by_rank_zero_waits_for_no_other_rank(two_ranks):
    import zarr

    store = zarr.open_group(two_ranks["figure store"], mode="r")
    assert store["predicted"][:].all() and store["image_id"][:].tolist() == [0, 1]


def pretrain_tiny() -> dict:
    """A guided MAE pre-training of the tiny ViT, 2 rounds (run on every rank): rank 0's losses, records
    and weights. SGD, as train_tiny."""
    from patchinteract.analyses.semantics.guided import MaskSchedule
    from patchinteract.analyses.semantics.mae import MaskedAutoencoder
    from patchinteract.analyses.semantics.mae_pretraining import PretrainingSamples

    seed_everything(0)
    vit = create_vit("VisionTransformer", 16, 4, 10, {"embed_dim": 32, "depth": 2, "num_heads": 2})
    mae = MaskedAutoencoder(vit, {"width": 16, "depth": 1, "heads": 2})
    keypoint = np.random.default_rng(0).random((IMAGES, 16)) < 0.3
    masks = MaskSchedule("guided", 0.5, 16, (0.1, 0.5), 1, keypoint)
    samples = PretrainingSamples(LabelledImages(), masks, GRID, seed=0, hflip=True)
    recipe = Recipe.from_config({"epochs": 2, "lr": 1e-2, "batch_size": 8, "optimizer": "sgd"})
    device = torch.device("cpu")
    rounds = {"objective": reconstruction, "after_epoch": lambda _mae, epoch: {"round": epoch + 1}}
    training = TrainingLoop(mae, samples, recipe, device, seed=0, **rounds)
    summary = training.run()
    weights = {name: value.detach().clone() for name, value in mae.state_dict().items()}
    return {"summary": summary, "losses": training.step_losses, "weights": weights}


def test_mae_pretraining_on_two_ranks_takes_the_steps_of_one(two_ranks):
    """DDP over the MAE (its pooling and head frozen: no gradient DDP would wait for), each rank half of
    every batch with its masks: the steps of one process, within float noise."""
    one, two = launch(pretrain_tiny, 1, "cpu"), two_ranks["mae"]
    records = [(r["round"], r["loss"]) for r in one["summary"]["epochs"]]
    assert [r["round"] for r in two["summary"]["epochs"]] == [0, 1, 2] and len(two["losses"]) == 6  # 0: as initialised
    np.testing.assert_allclose([r["loss"] for r in two["summary"]["epochs"]], [loss for _, loss in records], atol=1e-5)
    np.testing.assert_allclose(two["losses"], one["losses"], rtol=0, atol=1e-5)
    for name, value in one["weights"].items():
        torch.testing.assert_close(two["weights"][name], value, rtol=0, atol=1e-5, msg=name)
