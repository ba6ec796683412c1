"""MAE pre-training with guided masks (Wu et al. Sec. 5.2), the restoration experiment (Sec. 2) and the three
stages (Sec. 4.3): masks counted by hand, a decoder that learns a planted image, stages of planted curves,
the k-NN monitor, and a run stopped by SIGTERM that resumes to the uninterrupted run's weights and curve."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import interrupt_once_started, run_training_script
from safetensors.torch import load_file

from patchinteract.analyses.semantics.guided import (
    MaskSchedule,
    curriculum_beta,
    fallback,
    guided_counts,
    guided_mask,
    random_mask,
)
from patchinteract.analyses.semantics.mae import MaskedAutoencoder, patch_pixels, pixels_to_images
from patchinteract.analyses.semantics.mae_pretraining import PretrainingSamples, knn_predictions, spread_over_classes
from patchinteract.analyses.semantics.stages import attention_map, stage_table, three_stages
from patchinteract.models.vit import create_vit
from patchinteract.report.pretraining_tables import pretraining_table, rounds_to_reach
from patchinteract.report.retraining_tables import Uncertainty


def test_guided_counts_by_hand():
    # N = 16, r = 0.5: 8 masked; β = 0.25: round(16 · 0.5 · 0.25) = 2 keypoint patches, 6 others.
    assert guided_counts(16, 0.5, 0.25, n_keypoint=5) == (2, 6, 0)
    assert guided_counts(16, 0.5, 0.25, n_keypoint=1) == (1, 7, 1)  # one keypoint patch only
    assert guided_counts(16, 0.5, 0.25, n_keypoint=12) == (4, 4, 2)  # only 4 non-keypoint patches
    assert guided_counts(16, 0.5, 0.5, n_keypoint=16) == (8, 0, 4)
    assert guided_counts(10, 0.3, 0.5, n_keypoint=5) == (2, 1, 0)  # 3 masked; round(1.5) = 2 (half up)
    keypoint = np.zeros((3, 16), bool)
    keypoint[0, :5], keypoint[1, :1], keypoint[2, :12] = True, True, True
    assert fallback(keypoint, 0.5, 0.25) == (2, 3)


def test_guided_masks_draw_within_each_group_and_follow_the_seed():
    keypoint = np.zeros(16, bool)
    keypoint[[1, 4, 6, 9, 11]] = True
    masks = [guided_mask(keypoint, 0.5, 0.25, np.random.default_rng([0, i])) for i in range(200)]
    for masked in masks:
        assert masked.sum() == 8 and (masked & keypoint).sum() == 2
    frequency = np.mean(masks, axis=0)
    assert np.all(frequency[keypoint] > 0.25) and np.all(frequency[keypoint] < 0.55)  # 2 of 5: 0.4 each
    assert np.all(frequency[~keypoint] > 0.4) and np.all(frequency[~keypoint] < 0.7)  # 6 of 11: 0.55 each
    again = guided_mask(keypoint, 0.5, 0.25, np.random.default_rng([0, 7]))
    np.testing.assert_array_equal(again, masks[7])
    assert not np.array_equal(masks[7], masks[8])
    theta = np.arange(16, dtype=float)
    ordered = guided_mask(keypoint, 0.5, 0.25, np.random.default_rng(0), theta)
    assert set(np.flatnonzero(ordered)) == {9, 11} | {0, 2, 3, 5, 7, 8}  # highest-θ keypoint, lowest-θ others
    assert random_mask(16, 0.5, np.random.default_rng(3)).sum() == 8


def test_the_curriculum_steps_every_rounds_per_step_rounds_and_stays():
    betas = [0.1, 0.2, 0.3, 0.4, 0.5]
    got = [curriculum_beta(round_index, betas, 2) for round_index in range(13)]
    assert got == [0.1, 0.1, 0.2, 0.2, 0.3, 0.3, 0.4, 0.4, 0.5, 0.5, 0.5, 0.5, 0.5]
    schedule = MaskSchedule("guided", 0.5, 16, tuple(betas), 2, np.ones((1, 16), bool))
    assert schedule.beta(5) == 0.3 and MaskSchedule("random", 0.5, 16).beta(5) is None
    with pytest.raises(ValueError, match="needs the keypoint patches"):
        MaskSchedule("guided", 0.5, 16)


class Images(torch.utils.data.Dataset):
    def __init__(self, n=6):
        self.images = torch.randint(
            0, 256, (n, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)
        )

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return self.images[index], index % 2, 100 + index


def test_both_schedules_see_the_same_images_and_flips_and_differ_only_in_masks():
    keypoint = np.random.default_rng(0).random((6, 16)) < 0.3
    guided = MaskSchedule("guided", 0.5, 16, (0.1, 0.5), 1, keypoint)
    samples = {
        schedule: PretrainingSamples(Images(), masks, (4, 4), seed=3, hflip=True)
        for schedule, masks in (("random", MaskSchedule("random", 0.5, 16)), ("guided", guided))
    }
    flipped = 0
    for index in range(6):
        random_image, _, random_masked = samples["random"].sample(1, index)
        guided_image, image_id, guided_masked = samples["guided"].sample(1, index)
        assert torch.equal(random_image, guided_image) and image_id == 100 + index
        assert random_masked.sum() == guided_masked.sum() == 8
        is_flipped = not torch.equal(guided_image, Images()[index][0])
        flipped += is_flipped
        keypoint_seen = keypoint[index].reshape(4, 4)[:, ::-1].reshape(-1) if is_flipped else keypoint[index]
        expected = min(max(4, 8 - int((~keypoint[index]).sum())), int(keypoint[index].sum()))  # round(16·.5·.5) = 4
        assert int((guided_masked.numpy() & keypoint_seen).sum()) == expected
    assert 0 < flipped < 6


def tiny_vit(seed=0, **options):
    torch.manual_seed(seed)
    return create_vit("VisionTransformer", 16, 4, 10, {"embed_dim": 32, "depth": 2, "num_heads": 2} | options)


def test_patches_round_trip():
    images = torch.randn(2, 3, 16, 16)
    pixels = patch_pixels(images, 4)
    assert pixels.shape == (2, 16, 48)
    torch.testing.assert_close(pixels[0, 5], images[0, :, 4:8, 4:8].permute(1, 2, 0).reshape(-1))
    torch.testing.assert_close(pixels_to_images(pixels, 4, (4, 4)), images)


@pytest.mark.parametrize("options", [{}, {"class_token": False, "global_pool": "avg"}, {"reg_tokens": 2}])
def test_the_decoder_learns_a_planted_image(options):
    """Trained on one image with random masks, the MAE restores its masked patches: the error falls far
    below the untrained one, with or without prefix tokens."""
    torch.manual_seed(0)
    planted = torch.zeros(1, 3, 16, 16)
    planted[:, 0, ::2] = 1.0  # stripes and a square: patches with structure
    planted[:, 1, 4:12, 4:12] = 2.0
    planted = planted + 0.1 * torch.randn(1, 3, 16, 16)
    mae = MaskedAutoencoder(tiny_vit(**options), {"width": 32, "depth": 1, "heads": 2})
    optimizer = torch.optim.AdamW(mae.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)

    def masked():
        return torch.from_numpy(np.stack([random_mask(16, 0.5, rng) for _ in range(8)]))

    images = planted.expand(8, -1, -1, -1)
    with torch.no_grad():
        before = float(mae.errors(images, masked()).mean())
    for _step in range(150):
        loss = mae(images, masked())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        after = mae.errors(images, masked())
        restored = mae.restored(images[:1], masked()[:1])
    assert float(after.mean()) < 0.1 * before, (before, float(after.mean()))
    assert float(((restored - planted) ** 2).mean()) < 0.05


def test_three_stages_of_planted_curves():
    gap = [0.0, 0.1, 0.0, 0.05, 2.0, 2.1, 2.0, 1.9, 1.0, 1.1, 1.0, 0.9]
    focus = [3.0, 3.0, 3.1, 2.9, 1.0, 1.1, 0.9, 1.0, 2.0, 2.1, 2.0, 1.9]
    assert three_stages(np.column_stack([gap, focus])) == (4, 8)
    summary = pd.DataFrame(
        {
            "layer": np.repeat(np.arange(12), 2),
            "head": np.tile([0, 1], 12),
            "theta_kk": np.repeat(np.array(gap) / 2 + 0.5, 2),
            "theta_kn": np.repeat(0.5 - np.array(gap) / 2, 2),
            "focus_index": np.repeat(focus, 2),
        }
    )
    table = stage_table(summary)
    assert table["stage"].tolist() == ["retrieval", "capture", "coach"]
    assert table[["first_layer", "last_layer"]].to_numpy().tolist() == [[0, 3], [4, 7], [8, 11]]
    np.testing.assert_allclose(table["gap"], [np.mean(gap[:4]), np.mean(gap[4:8]), np.mean(gap[8:])])
    assert stage_table(summary[summary["layer"] < 2]).empty  # two layers: no stages
    attention = np.zeros((2, 17, 17))
    attention[:, 0, 1 + 5] = 1.0  # CLS attends to patch 5 in both heads
    heat = attention_map(attention, 1, (4, 4))
    assert heat.shape == (4, 4) and heat[1, 1] == 1.0 and heat.sum() == 1.0


def test_knn_votes_by_cosine_neighbours():
    bank = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [0.05, 1.0]])
    labels = torch.tensor([0, 0, 1, 1, 1])
    queries = torch.tensor([[2.0, 0.1], [0.1, 3.0], [1.0, 0.98]])
    assert knn_predictions(bank, labels, queries, k=2, temperature=0.07).tolist() == [0, 1, 0]
    # k = 5: the three class-1 neighbours outvote the two class-0 ones for the ambiguous query
    assert knn_predictions(bank, labels, queries, k=5, temperature=10.0).tolist()[2] == 1
    curve = pd.DataFrame({"round": [1, 2, 3], "knn_top1": [10.0, 50.0, 40.0]})
    assert rounds_to_reach(curve, 45.0) == 2 and np.isnan(rounds_to_reach(curve, 60.0))
    # From round 0 on: a curve that never rises above its start has not reached a threshold below it.
    falling = pd.DataFrame({"round": [0, 1, 2], "knn_top1": [42.0, 40.0, 31.0]})
    assert np.isnan(rounds_to_reach(falling, 29.5))
    rising = pd.DataFrame({"round": [0, 1, 2], "knn_top1": [42.0, 40.0, 43.0]})
    assert rounds_to_reach(rising, 29.5) == 1  # it rose above its start (round 2), so round 1 counts


def test_the_table_reads_each_curve_from_its_round_zero():
    """The gain over round 0 by hand (two seeds of random, one of guided), and a curve that only falls from its
    start does not 'reach' a threshold below it."""

    def run(schedule, seed, knn):
        curve = pd.DataFrame({"round": range(len(knn)), "knn_top1": knn})
        predictions = pd.DataFrame({"knn_correct": [True, False], "probe_correct": [True, True]})
        return {"schedule": schedule, "seed": seed, "rounds": len(knn) - 1, "knn_top1": knn[-1]} | {
            "curve": curve,
            "predictions": predictions,
        }

    runs = [
        run("random", 0, [40.0, 45.0, 50.0]),
        run("random", 1, [30.0, 35.0, 50.0]),
        run("guided", 0, [60, 55, 50.0]),
    ]
    table = pretraining_table(runs, Uncertainty(resamples=200)).set_index("schedule")
    assert table.loc["random", "knn_round0"] == 35.0 and table.loc["random", "knn_gain"] == 15.0  # (10 + 20) / 2
    assert table.loc["random", "knn_gain_ci_low"] >= 10.0 and table.loc["random", "knn_gain_ci_high"] <= 20.0
    assert table.loc["guided", "knn_gain"] == -10.0 and np.isnan(table.loc["guided", "knn_gain_ci_low"])  # one seed
    assert table.loc["random", "rounds_to_reach_per_seed"] == "2,2"  # 95 % of 50: 47.5
    assert table.loc["guided", "rounds_to_reach_per_seed"] == "not reached"  # 55 ≥ 47.5, but it only fell from 60


def test_restoration_examples_are_spread_over_the_classes():
    labels = np.array([3, 3, 3, 1, 1, 7, 3, 1])
    # the first of each class in the order classes appear (3, 1, 7), then the second of each, ...
    assert spread_over_classes(labels, 5).tolist() == [0, 3, 5, 1, 4]
    assert spread_over_classes(labels, 20).tolist() == [0, 3, 5, 1, 4, 2, 7, 6]


PRETRAIN = """
import json, sys, time, torch
import numpy as np
from pathlib import Path
from patchinteract.analyses.semantics.guided import MaskSchedule
from patchinteract.analyses.semantics.mae import MaskedAutoencoder
from patchinteract.analyses.semantics.mae_pretraining import EncoderMonitor, PretrainingSamples
from patchinteract.data.manifest import split_dataset
from patchinteract.models.transforms import batch_normalization, eval_dataset, uint8_eval_transform
from patchinteract.models.vit import create_vit
from patchinteract.report.pretraining_tables import rounds_to_reach
from patchinteract.models.weights import save_weights
from patchinteract.training.loop import Recipe, reconstruction, seed_everything, train_model

manifest, checkpoint, weights, delay = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
torch.set_num_threads(1)
seed_everything(0)
vit = create_vit("VisionTransformer", 16, 4, 10, {"embed_dim": 32, "depth": 2, "num_heads": 2})
recipe = Recipe.from_config({"epochs": 4, "lr": 1e-3, "batch_size": 6, "optimizer": "adamw", "hflip": True})
view = uint8_eval_transform(vit)

def slow_view(image):  # slows the run so the test can stop it part-way
    Path(checkpoint + ".started").touch()
    time.sleep(delay)
    return view(image)

images = split_dataset(manifest, "train", slow_view)
keypoint = np.random.default_rng(0).random((len(images), 16)) < 0.3
masks = MaskSchedule("guided", 0.5, 16, (0.1, 0.3, 0.5), 1, keypoint)
monitor = EncoderMonitor(eval_dataset(vit, manifest, "train"), eval_dataset(vit, manifest, "val"), masks, 5, 0.07,
                         torch.device("cpu"), {"batch_size": 16})
mae = MaskedAutoencoder(vit, {"width": 16, "depth": 1, "heads": 2})
samples = PretrainingSamples(images, masks, (4, 4), 0, True)
summary = train_model(mae, samples, recipe, torch.device("cpu"), seed=0, checkpoint=checkpoint, fingerprint="test",
                      objective=reconstruction, normalize=batch_normalization(vit), after_epoch=monitor)
save_weights(mae, weights)
print(json.dumps(summary))
"""


@pytest.mark.slow
def test_a_pretraining_run_stopped_by_sigterm_resumes_to_the_uninterrupted_run(tmp_path, digits_manifest):
    """A guided run (β changes every round) stopped part-way ends, resumed, with the weights and the
    per-round k-NN curve of the uninterrupted run."""
    uninterrupted = run_training_script(PRETRAIN, digits_manifest, tmp_path, "once")
    once = json.loads(uninterrupted.communicate(timeout=300)[0])
    assert uninterrupted.returncode == 0 and once["steps"] == 24  # 4 rounds x 6 batches of 6
    assert [record["round"] for record in once["epochs"]] == [0, 1, 2, 3, 4]  # round 0: as initialised
    assert [record["beta"] for record in once["epochs"]] == [None, 0.1, 0.3, 0.5, 0.5]

    interrupted = run_training_script(PRETRAIN, digits_manifest, tmp_path, "resumed", delay=0.05)
    interrupt_once_started(interrupted, tmp_path / "resumed.pt.started", after=2.5)  # into the second round
    assert interrupted.returncode != 0
    state = torch.load(tmp_path / "resumed.pt", weights_only=False)
    assert 6 < state["position"]["step"] < 24 and state["position"]["epochs"]  # after the first round's record

    resumed = run_training_script(PRETRAIN, digits_manifest, tmp_path, "resumed")
    summary = json.loads(resumed.communicate(timeout=300)[0])
    assert resumed.returncode == 0 and summary["resumed_from_step"] == state["position"]["step"]
    assert summary["epochs"] == once["epochs"]
    first, again = load_file(tmp_path / "once.safetensors"), load_file(tmp_path / "resumed.safetensors")
    for name, tensor in first.items():
        torch.testing.assert_close(again[name], tensor, rtol=0, atol=0, msg=name)
