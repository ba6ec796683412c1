"""Training: the schedule, SIGTERM saves a checkpoint and the resumed run ends identical, evaluation, masks."""

import json

import numpy as np
import pytest
import torch
from conftest import interrupt_once_started, run_training_script
from safetensors.torch import load_file

from patchinteract.training.evaluation import evaluate_classifier
from patchinteract.training.loop import warmup_cosine_factor
from patchinteract.training.retraining import MaskMismatchError, load_mask_array

TRAIN = """
import json, sys, time, torch
from pathlib import Path
import patchinteract
from patchinteract.models.masked import MaskedViT
from patchinteract.models.vit import create_vit
from patchinteract.models.weights import save_weights
from patchinteract.models.transforms import batch_normalization, train_transform
from patchinteract.training.retraining import BranchSamples
from patchinteract.training.loop import Recipe, seed_everything, train_model
from patchinteract.data.manifest import split_dataset

manifest, checkpoint, weights, delay = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
torch.set_num_threads(1)
seed_everything(0)
vit = create_vit("VisionTransformer", 16, 4, 10, {"embed_dim": 32, "depth": 2, "num_heads": 2})
recipe = Recipe.from_config({"epochs": 3, "lr": 1e-3, "batch_size": 4, "optimizer": "adamw", "warmup_steps": 3,
                             "crop_scale": (0.5, 1.0), "hflip": True})
augment = train_transform(vit, recipe.crop_scale)

def slow_augment(image):  # slows the run so the test can stop it part-way
    Path(checkpoint + ".started").touch()  # the loop (and its SIGTERM handler) is running
    time.sleep(delay)
    return augment(image)

dataset = BranchSamples(split_dataset(manifest, "train", slow_augment), {}, (4, 4), recipe.hflip)
summary = train_model(MaskedViT(vit), dataset, recipe, torch.device("cpu"), seed=0,
                           checkpoint=checkpoint, fingerprint="test", normalize=batch_normalization(vit))
save_weights(vit, weights)
print(json.dumps(summary))
"""


@pytest.mark.slow
def test_sigterm_checkpoints_and_the_resumed_run_ends_identical(tmp_path, digits_manifest):
    uninterrupted = run_training_script(TRAIN, digits_manifest, tmp_path, "once")
    once_summary = json.loads(uninterrupted.communicate(timeout=300)[0])
    assert uninterrupted.returncode == 0 and once_summary["steps"] == 27  # 3 epochs x 9 batches of 4

    interrupted = run_training_script(TRAIN, digits_manifest, tmp_path, "resumed", delay=0.03)
    interrupt_once_started(interrupted, tmp_path / "resumed.pt.started", after=1)
    assert interrupted.returncode != 0
    state = torch.load(tmp_path / "resumed.pt", weights_only=False)
    assert 0 < state["position"]["step"] < 27

    resumed = run_training_script(TRAIN, digits_manifest, tmp_path, "resumed")
    summary = json.loads(resumed.communicate(timeout=300)[0])
    assert resumed.returncode == 0 and summary["resumed_from_step"] == state["position"]["step"]
    assert summary["steps"] == 27 and summary["final_loss"] == once_summary["final_loss"]
    once, again = load_file(tmp_path / "once.safetensors"), load_file(tmp_path / "resumed.safetensors")
    for name, tensor in once.items():
        torch.testing.assert_close(again[name], tensor, rtol=0, atol=0)


@pytest.mark.slow
def test_a_job_near_its_time_limit_stops_with_a_checkpoint_and_resumes_to_the_uninterrupted_run(
    tmp_path, digits_manifest, monkeypatch
):
    """No signal: the job's end (here PATCHINTERACT_JOB_END, under Slurm squeue's) less the slowest step, the
    checkpoint write (slowed to 1 s) and the margin is when it stops, with a checkpoint from which a rerun
    ends on the weights of an uninterrupted run."""
    import subprocess
    import time

    from patchinteract.training.deadline import MARGIN_SECONDS

    uninterrupted = run_training_script(TRAIN, digits_manifest, tmp_path, "once")
    assert uninterrupted.communicate(timeout=300)[0] and uninterrupted.returncode == 0

    # 27 steps of ~1.2 s (0.3 s an image): far more than fit before an end 30 s from now
    end = time.time() + 30
    monkeypatch.setenv("PATCHINTERACT_JOB_END", str(end))
    monkeypatch.setenv("PATCHINTERACT_TEST_CHECKPOINT_DELAY", "1")
    stopped = run_training_script(TRAIN, digits_manifest, tmp_path, "resumed", delay=0.3, stderr=subprocess.PIPE)
    errors = stopped.communicate(timeout=300)[1]
    assert stopped.returncode != 0 and time.time() < end - MARGIN_SECONDS + 5, errors[-2000:]
    step = torch.load(tmp_path / "resumed.pt", weights_only=False)["position"]["step"]
    assert 0 < step < 27 and f"time limit near: stopped at step {step}, " in errors, errors[-2000:]
    assert "a checkpoint 1." in errors  # the write measured, slowed as a large one on a shared file system

    monkeypatch.delenv("PATCHINTERACT_JOB_END")
    resumed = run_training_script(TRAIN, digits_manifest, tmp_path, "resumed")
    summary = json.loads(resumed.communicate(timeout=300)[0])
    assert resumed.returncode == 0 and summary["resumed_from_step"] == step and summary["steps"] == 27
    once, again = load_file(tmp_path / "once.safetensors"), load_file(tmp_path / "resumed.safetensors")
    for name, tensor in once.items():
        torch.testing.assert_close(again[name], tensor, rtol=0, atol=0)


def test_checkpoint_of_other_settings_is_ignored(tmp_path, digits_manifest):
    from patchinteract.data.manifest import split_dataset
    from patchinteract.models.transforms import eval_transform
    from patchinteract.models.vit import create_vit
    from patchinteract.training.loop import Recipe, save_checkpoint, train_model

    save_checkpoint(tmp_path / "c.pt", {"fingerprint": "other settings"})
    vit = create_vit("VisionTransformer", 16, 4, 10, {"embed_dim": 16, "depth": 1, "num_heads": 2})
    dataset = split_dataset(digits_manifest, "train", eval_transform(vit))
    recipe = Recipe.from_config({"epochs": 1, "lr": 1e-3, "batch_size": 12, "optimizer": "adamw"})
    summary = train_model(
        vit, dataset, recipe, torch.device("cpu"), seed=0, checkpoint=tmp_path / "c.pt", fingerprint="these settings"
    )
    assert summary["resumed_from_step"] == 0 and summary["steps"] == 3
    assert torch.load(tmp_path / "c.pt", weights_only=False)["fingerprint"] == "these settings"


def test_masks_for_other_images_are_refused(tmp_path):
    import zarr

    group = zarr.open_group(tmp_path / "w.zarr", mode="w")
    group.create_array("window", data=np.zeros((3, 4, 4), np.int16))
    group.create_array("image_id", data=np.array([0, 1, 2]))
    windows = load_mask_array(tmp_path / "w.zarr", "window", np.array([0, 1, 2]))
    keep = load_mask_array(None, "keep", np.array([0, 1, 2]))
    assert windows.shape == (3, 4, 4) and keep is None
    with pytest.raises(MaskMismatchError, match="rebuild the masks"):
        load_mask_array(tmp_path / "w.zarr", "window", np.array([0, 1, 5]))


def test_warmup_then_cosine():
    assert warmup_cosine_factor(0, 100, 10) == pytest.approx(0.1)
    assert warmup_cosine_factor(9, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine_factor(55, 100, 10) == pytest.approx(0.5)
    assert warmup_cosine_factor(100, 100, 10) == pytest.approx(0.0)


class FixedLogits(torch.nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = logits
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, images):
        return self.logits[images[:, 0].long()]


def test_top1_and_top5_in_percent():
    logits = torch.arange(8.0).repeat(4, 1)  # class 7 first, then 6, 5, 4, 3
    labels = torch.tensor([7, 3, 2, 6])
    batches = [(torch.arange(4.0)[:, None], labels, torch.arange(4))]
    metrics, predictions = evaluate_classifier(FixedLogits(logits), batches, torch.device("cpu"))
    assert metrics["top1"] == 25.0 and metrics["top5"] == 75.0 and metrics["n_images"] == 4
    # per image: the same decisions, and p_true the softmax probability of the label
    assert predictions["image_id"].tolist() == [0, 1, 2, 3] and predictions["prediction"].tolist() == [7] * 4
    assert predictions["correct"].tolist() == [True, False, False, False]
    assert predictions["p_true"].to_numpy() == pytest.approx(torch.softmax(logits[0], 0)[labels].numpy())
    assert [list(top) for top in predictions["top5"]] == [[7, 6, 5, 4, 3]] * 4
