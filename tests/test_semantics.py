"""Wu et al.'s measures: θ (eq. 2-4) and the focus index (eq. 5) against loops, SIFT keypoints per patch
on drawn images, masking by θ (r = 0 is the plain evaluation; dropped tokens against a hand-built
forward), and the semantics store (Dask == streaming)."""

import math

import patchinteract.compat  # noqa: F401

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
import zarr
from PIL import Image

from patchinteract.analyses.semantics.interrelation import (
    attended_patches,
    focus_index,
    patch_theta,
    row_focus,
    semantic_reductions,
)
from patchinteract.analyses.semantics.keypoints import (
    KeypointCounter,
    detect_keypoints,
    grayscale,
    keypoint_counts,
    location_patches,
    region_patches,
    sift_detector,
)
from patchinteract.analyses.semantics.masking import masking_accuracy, normalised_colour, zeroed_patches
from patchinteract.analyses.semantics.ranking import (
    check_ratios,
    keep_mask,
    masked_count,
    masking_rankings,
    patch_ranking,
    patch_scores,
)
from patchinteract.models.families import dropped_tokens
from patchinteract.models.vit import create_vit
from patchinteract.training.evaluation import evaluate_classifier

SIFT = {"assign": "location", "contrast_threshold": 0.04, "edge_threshold": 10.0}


def random_attention(shape, tokens, seed=0):
    logits = np.random.default_rng(seed).normal(size=(*shape, tokens, tokens)) * 2
    weights = np.exp(logits)
    return (weights / weights.sum(-1, keepdims=True)).astype(np.float32)


def theta_loop(matrix, counts, gamma, weighting):
    """θ_i of every starting patch of one head's patch block, written from eq. 2-3 row by row."""
    n = len(counts)
    thetas = []
    for i in range(n):
        line = gamma * sum(float(a) for a in matrix[i]) / n
        attended = [j for j in range(n) if matrix[i, j] >= line]
        key = [j for j in attended if counts[j] > 0]
        non = [j for j in attended if counts[j] == 0]
        keyed = sum(counts[j] for j in key) if weighting == "weighted" else len(key)
        thetas.append(keyed / (len(non) + keyed) if attended else math.nan)
    return np.array(thetas)


def group_means(thetas, counts):
    key = [t for t, c in zip(thetas, counts, strict=True) if c > 0 and not math.isnan(t)]
    non = [t for t, c in zip(thetas, counts, strict=True) if c == 0 and not math.isnan(t)]
    return (np.mean(key) if key else math.nan), (np.mean(non) if non else math.nan)


@pytest.mark.parametrize("weighting", ["weighted", "unweighted"])
@pytest.mark.parametrize("gamma", [1.0, 0.6, 1.7])
def test_theta_matches_a_loop(weighting, gamma):
    n, prefix = 12, 1
    attn = random_attention((3, 2, 3), prefix + n, seed=7)
    counts = np.array(
        [
            [0, 3, 0, 0, 1, 0, 0, 0, 2, 0, 0, 1],  # a few keypoint patches, weights 1-3
            [0] * 12,  # no keypoint: no θ_KK
            [1, 2, 1, 4, 1, 1, 1, 1, 1, 1, 1, 1],  # keypoints everywhere: no θ_NK
        ]
    )
    result = semantic_reductions(attn, prefix, counts, gamma, weighting)
    theta_patch = []
    for image in range(3):
        per_layer = []
        for layer in range(2):
            per_head = []
            for head in range(3):
                thetas = theta_loop(attn[image, layer, head, prefix:, prefix:], counts[image], gamma, weighting)
                kk, nk = group_means(thetas, counts[image])
                np.testing.assert_allclose(result["theta_kk"][image, layer, head], kk, rtol=1e-5)
                np.testing.assert_allclose(result["theta_nk"][image, layer, head], nk, rtol=1e-5)
                per_head.append(thetas)
            per_layer.append(np.nanmean(per_head, axis=0))
        theta_patch.append(per_layer)
    np.testing.assert_allclose(result["theta_patch"], np.array(theta_patch), rtol=1e-5)
    assert np.isnan(result["theta_kk"][1]).all() and np.isnan(result["theta_nk"][2]).all()
    assert np.isfinite(result["theta_kk"][0]).all() and np.isfinite(result["theta_nk"][0]).all()
    assert (result["theta_nk"][1] == 0).all()  # no keypoint anywhere: nothing attended is a keypoint patch
    # weighting changes the values where a keypoint patch holds several keypoints
    other = semantic_reductions(attn, prefix, counts, gamma, "unweighted" if weighting == "weighted" else "weighted")
    assert not np.allclose(np.nan_to_num(other["theta_kk"][0]), np.nan_to_num(result["theta_kk"][0]))


def test_theta_by_hand_and_empty_attended_sets():
    # one row, 4 patches: attention 0.4 0.3 0.2 0.1, line γ·0.25; t = 2 0 1 0
    row = np.array([[[[0.4, 0.3, 0.2, 0.1]] * 4]], dtype=np.float32)  # (image, head, N, N)
    counts = np.array([[2, 0, 1, 0]])
    # γ = 1: S = {0, 1} -> weighted 2 / (1 + 2), unweighted 1 / 2
    assert patch_theta(attended_patches(row, 1.0), counts)[0, 0, 0] == pytest.approx(2 / 3)
    assert patch_theta(attended_patches(row, 1.0), counts, "unweighted")[0, 0, 0] == pytest.approx(1 / 2)
    # γ = 0.7: line 0.175, S = {0, 1, 2} -> (2 + 1) / (1 + 3)
    assert patch_theta(attended_patches(row, 0.7), counts)[0, 0, 0] == pytest.approx(3 / 4)
    # a constant row attends every patch at γ = 1, none at γ > 1 (θ undefined)
    flat = np.full((1, 1, 4, 4), 0.25, np.float32)
    assert patch_theta(attended_patches(flat, 1.0), counts)[0, 0, 0] == pytest.approx(3 / 5)
    assert np.isnan(patch_theta(attended_patches(flat, 1.5), counts)).all()
    with pytest.raises(ValueError, match="semantics.gamma"):
        attended_patches(row, 0.0)
    with pytest.raises(ValueError, match="semantics.weighting"):
        patch_theta(attended_patches(row, 1.0), counts, "squared")


def test_focus_index_on_constant_one_hot_and_hand_computed_rows():
    n = 16
    assert row_focus(np.full(n, 1 / n))[()] == pytest.approx(math.log(n), rel=1e-6)
    assert row_focus(np.eye(n)[3])[()] == pytest.approx(0.0, abs=1e-7)
    # 1 2 3 1 -> min-max 0 .5 1 0 -> q = 0 1/3 2/3 0
    expected = -(1 / 3 * math.log(1 / 3) + 2 / 3 * math.log(2 / 3))
    assert row_focus(np.array([1.0, 2.0, 3.0, 1.0]))[()] == pytest.approx(expected, rel=1e-6)
    rows = np.stack([np.full(n, 1 / n), np.eye(n)[0]])
    assert focus_index(rows) == pytest.approx((math.log(n) + 0) / 2, rel=1e-6)
    # broader attention, higher index
    peaked, broad = random_attention((1,), n, seed=1)[0] ** 4, random_attention((1,), n, seed=1)[0]
    assert focus_index(broad) > focus_index(peaked / peaked.sum(-1, keepdims=True))


def test_location_patches_at_the_borders():
    grid, patch = (2, 3), (4, 4)  # 8 x 12 pixels
    points = np.array(
        [
            [3.49, 0.0, 1],
            [3.5, 0.0, 1],  # last pixel of column 0 | first pixel of column 1 (x + 0.5 = 4)
            [-0.6, -0.6, 1],  # outside the top-left corner: clipped into patch 0
            [11.9, 7.9, 1],  # beyond the bottom-right pixel centre: last patch
            [0.0, 3.5, 1],  # first pixel of row 1
        ],
        dtype=np.float32,
    )
    assert location_patches(points, grid, patch).tolist() == [0, 1, 0, 5, 3]
    assert keypoint_counts(points, grid, patch, "location").tolist() == [2, 1, 0, 1, 0, 1]
    # region: a disc of diameter 3 at the corner of four patches touches all four, one of diameter 1 only its own
    discs = np.array([[3.5, 3.5, 3.0], [5.5, 1.5, 1.0]], dtype=np.float32)
    assert region_patches(discs, grid, patch).astype(int).tolist() == [[1, 1, 0, 1, 1, 0], [0, 1, 0, 0, 0, 0]]
    with pytest.raises(ValueError, match="semantics.keypoints.assign"):
        keypoint_counts(points, grid, patch, "nearest")
    for assign in ("location", "region"):  # an image without keypoints
        assert keypoint_counts(np.zeros((0, 3), np.float32), grid, patch, assign).tolist() == [0] * 6


def drawn_corners(size=64):
    """A black image with two white squares whose corners lie inside known patches."""
    image = np.zeros((size, size, 3), np.uint8)
    cv2.rectangle(image, (6, 6), (22, 22), (255, 255, 255), thickness=-1)
    cv2.rectangle(image, (40, 36), (58, 60), (255, 255, 255), thickness=-1)
    return image


def test_sift_keypoints_land_in_the_patch_that_contains_them():
    image = drawn_corners()
    points = detect_keypoints(grayscale(image), sift_detector())
    assert len(points) >= 4
    grid, patch = (4, 4), (16, 16)
    counts = keypoint_counts(points, grid, patch, "location")
    assert counts.sum() == len(points)
    for x, y, _size in points:  # the patch whose pixels [c·16, c·16 + 15] hold the nearest pixel centre
        row, col = int(round(y)) // 16, int(round(x)) // 16
        assert counts[row * 4 + col] > 0
    # the squares span patches (0,0), (0,1), (1,0), (1,1) and (2,2), (2,3), (3,2), (3,3); nothing elsewhere
    squares = {0, 1, 4, 5, 10, 11, 14, 15}
    assert set(np.flatnonzero(counts)) <= squares
    assert np.flatnonzero(counts).size >= 2
    # the counter (one detector per thread) counts the same
    assert KeypointCounter(grid, patch, SIFT).counts(image).tolist() == counts.tolist()


def test_grayscale_palette_and_small_images_are_converted_like_the_pipeline(tmp_path, digits_manifest):
    from patchinteract.data.manifest import read_manifest, split_dataset
    from patchinteract.models.transforms import eval_view

    rgb = drawn_corners(32)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(rgb[..., 0]).save(tmp_path / "gray.png")  # mode L
    Image.fromarray(rgb).convert("P").save(tmp_path / "palette.png")
    model = create_vit("VisionTransformer", 32, 8, 10, {"embed_dim": 16, "depth": 1, "num_heads": 2})
    view = eval_view(model)
    counter = KeypointCounter((4, 4), (8, 8), SIFT)
    counts = {}
    for name in ("rgb", "gray", "palette"):
        with Image.open(tmp_path / f"{name}.png") as image:
            counts[name] = counter.counts(np.asarray(view(image.convert("RGB"))))
    assert counts["rgb"].sum() > 0
    assert counts["gray"].tolist() == counts["rgb"].tolist() == counts["palette"].tolist()
    # the digits are 16 px, the model's input 32: the view is resized as for the model
    small = split_dataset(digits_manifest, "val", view)[0][0]
    assert read_manifest(digits_manifest)[0].shape[0] > 0 and np.asarray(small).shape == (32, 32, 3)
    with pytest.raises(ValueError, match="RGB view"):
        grayscale(rgb[..., 0])


def test_masking_rankings_and_masks():
    scores = np.array([[0.2, 0.9, np.nan, 0.5], [0.1, 0.1, 0.3, 0.0]], dtype=np.float32)
    assert patch_ranking(scores, "top").tolist() == [[1, 3, 0, 2], [2, 0, 1, 3]]
    assert patch_ranking(scores, "bottom").tolist() == [[2, 0, 3, 1], [3, 0, 1, 2]]
    random = patch_ranking(scores, "random", seed=3)
    assert sorted(random[0]) == [0, 1, 2, 3] and np.array_equal(random, patch_ranking(scores, "random", seed=3))
    assert not np.array_equal(
        patch_ranking(np.zeros((50, 8)), "random", 3), patch_ranking(np.zeros((50, 8)), "random", 4)
    )
    assert keep_mask(patch_ranking(scores, "top"), 2).tolist() == [
        [True, False, True, False],
        [False, True, False, True],
    ]
    assert [masked_count(r, 196) for r in (0.0, 0.05, 0.1, 0.4)] == [0, 10, 20, 78]
    with pytest.raises(ValueError, match=r"semantics.masking.ratios must lie in \[0, 1\)"):
        check_ratios([0.1, 1.0])
    with pytest.raises(ValueError, match="semantics.masking.ratios"):
        check_ratios([-0.1])
    theta = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    np.testing.assert_allclose(patch_scores(theta, "all"), theta.mean(axis=1))
    np.testing.assert_allclose(patch_scores(theta, [2, 0]), theta[:, [0, 2]].mean(axis=1))
    with pytest.raises(ValueError, match="semantics.masking.layers"):
        patch_scores(theta, [3])


def tiny_vit(seed=0, **extra):
    torch.manual_seed(seed)
    return create_vit("VisionTransformer", 16, 4, 5, {"embed_dim": 24, "depth": 2, "num_heads": 2} | extra).eval()


def test_zeroed_patches_and_dropped_tokens_against_a_hand_built_forward():
    images = torch.randn(3, 3, 16, 16)
    keep = torch.ones(3, 16, dtype=torch.bool)
    keep[:, [0, 5, 15]] = False
    zeroed = zeroed_patches(images, keep, (4, 4))
    assert (zeroed[:, :, 0:4, 0:4] == 0).all() and (zeroed[:, :, 4:8, 4:8] == 0).all()
    assert (zeroed[:, :, 12:16, 12:16] == 0).all() and torch.equal(zeroed[:, :, 0:4, 4:8], images[:, :, 0:4, 4:8])
    for pooling in ("token", "avg"):
        model = tiny_vit(global_pool=pooling)
        with torch.no_grad(), dropped_tokens(model, keep):
            dropped = model(images)
        with torch.no_grad():  # the same forward written out: embed, position, select, blocks, norm, head
            tokens = model._pos_embed(model.patch_embed(images))
            kept = [0] + [1 + j for j in range(16) if keep[0, j]]
            tokens = model.norm(model.blocks(tokens[:, kept]))
            pooled = tokens[:, 0] if pooling == "token" else tokens[:, 1:].mean(1)
            expected = model.head(model.fc_norm(pooled))
            plain = model(images)
        torch.testing.assert_close(dropped, expected, atol=1e-6, rtol=1e-5)
        assert not torch.allclose(dropped, plain, atol=1e-4)
    ragged = keep.clone()
    ragged[0, 1] = False
    with pytest.raises(ValueError, match="as many patches"):
        with dropped_tokens(model, ragged):
            pass


@pytest.mark.parametrize("mode", ["zero", "drop"])
def test_masking_at_zero_is_the_plain_evaluation(mode):
    model = tiny_vit(seed=1)
    images, labels = torch.randn(20, 3, 16, 16), torch.randint(0, 5, (20,))
    dataset = torch.utils.data.TensorDataset(images, labels, torch.arange(20))
    loader = torch.utils.data.DataLoader(dataset, batch_size=8)
    scores = np.random.default_rng(0).random((20, 16)).astype(np.float32)
    table, predictions = masking_accuracy(
        model, dataset, masking_rankings(scores, 2, seed=5), [0.25, 0.5], mode, torch.device("cpu"), batch_size=8
    )
    metrics, baseline = evaluate_classifier(model, loader, torch.device("cpu"))
    at_zero = table[table["r"] == 0]
    assert len(at_zero) == 4 and (at_zero["top1"] == metrics["top1"]).all()  # exactly
    # per image: every variant's 20 images, r = 0 those of the plain evaluation
    assert len(predictions) == len(table) * 20
    unmasked = predictions[(predictions["r"] == 0) & (predictions["order"] == "top")].drop(
        columns=["r", "order", "seed"]
    )
    pd.testing.assert_frame_equal(unmasked.reset_index(drop=True), baseline)
    for row in table.itertuples():
        rows = predictions[
            (predictions["r"] == row.r)
            & (predictions["order"] == row.order)
            & (predictions["seed"].fillna(-1) == (-1 if pd.isna(row.seed) else row.seed))
        ]
        assert row.top1 == 100.0 * rows["correct"].sum() / len(rows)
    assert sorted(table["order"].unique()) == ["bottom", "random", "top"]
    assert table.loc[table["order"] == "random", "seed"].unique().tolist() == [5, 6]
    assert table["masked_patches"].tolist()[:4] == [0] * 4 and set(table["masked_patches"]) == {0, 4, 8}
    # against masking by hand: top 4 of each image zeroed / dropped
    keep = torch.from_numpy(keep_mask(np.argsort(-scores, axis=1, kind="stable"), 4))
    with torch.no_grad():
        if mode == "zero":
            logits = model(zeroed_patches(images, keep, (4, 4)))
        else:
            with dropped_tokens(model, keep):
                logits = model(images)
        assert not torch.allclose(logits, model(images), atol=1e-4)  # masking changes the logits
    by_hand = 100.0 * (logits.argmax(-1) == labels).float().mean().item()
    row = table[(table["r"] == 0.25) & (table["order"] == "top")]
    assert row["top1"].item() == pytest.approx(by_hand)


def test_keypoint_store_and_semantics_store_dask_equals_streaming(tmp_path, digits_manifest):
    from patchinteract.analyses.semantics.keypoints import write_figure_keypoints, write_keypoint_store
    from patchinteract.analyses.semantics.semantics_store import (
        compute_semantics_store,
        semantics_summary,
        theta_table,
        write_semantics_store_streaming,
    )
    from patchinteract.attention.extraction import write_attention_store
    from patchinteract.data.manifest import split_dataset
    from patchinteract.models.transforms import eval_dataset, eval_view

    model = tiny_vit(seed=2)
    views = split_dataset(digits_manifest, "train", eval_view(model))
    counter = KeypointCounter((4, 4), (4, 4), SIFT | {"assign": "region"})
    keypoints = write_keypoint_store(
        views, tmp_path / "k.zarr", counter, threads=2, compression_level=1, attributes={"split": "train"}
    )
    stored = zarr.open_group(keypoints, mode="r")
    counts = stored["keypoints"][:]
    assert counts.shape == (len(views), 16) and stored["image_id"][:].tolist() == views.image_ids.tolist()
    assert counts[3].tolist() == counter.counts(np.asarray(views[3][0])).tolist()
    assert 0 < (counts > 0).mean() < 1  # keypoint and non-keypoint patches both occur
    figure = zarr.open_group(write_figure_keypoints(views, tmp_path / "f.zarr", counter, 3), mode="r")
    index = figure["index"][:]
    assert index.tolist() == [0, 18, 35] and figure["view"].shape == (3, 16, 16, 3)  # spread over the split
    assert figure["image_id"][:].tolist() == views.image_ids[index].tolist()
    for row, image in enumerate(index):
        points = figure["points"][row]
        points = points[~np.isnan(points[:, 0])]
        assert keypoint_counts(points, (4, 4), (4, 4), "region").tolist() == counts[image].tolist()

    dataset = eval_dataset(model, digits_manifest, "train")
    options = dict(device=torch.device("cpu"), batch_size=5, workers=0, compression_level=1)
    attention = write_attention_store(model, dataset, tmp_path / "a.zarr", attributes={}, chunk_setting=4, **options)
    settings = dict(gamma=0.9, weighting="weighted")
    from_store = zarr.open_group(
        compute_semantics_store(
            attention, keypoints, tmp_path / "s.zarr", dask_settings={"mode": "threads", "workers": 2}, **settings
        ),
        mode="r",
    )
    streamed = zarr.open_group(
        write_semantics_store_streaming(
            model, dataset, keypoints, tmp_path / "t.zarr", attributes={}, **settings, **options
        ),
        mode="r",
    )
    expected = semantic_reductions(zarr.open_group(attention)["attn"][:], 1, counts, **settings)
    for name in ("theta_kk", "theta_nk", "focus_index", "theta_patch"):
        np.testing.assert_array_equal(from_store[name][:], streamed[name][:])
        np.testing.assert_allclose(from_store[name][:], expected[name], rtol=1e-6)
    for name in ("label", "prediction", "image_id"):
        np.testing.assert_array_equal(from_store[name][:], streamed[name][:])
    assert from_store.attrs["gamma"] == 0.9 and streamed.attrs["weighting"] == "weighted"

    table = theta_table(tmp_path / "s.zarr")
    assert len(table) == len(dataset) * 2 * 2
    np.testing.assert_allclose(table["theta_kk"] + table["theta_kn"], 1.0)
    summary = semantics_summary(table)
    assert len(summary) == 4 and (summary["images"] == len(dataset)).all()
    no_keypoint = int((counts.sum(axis=1) == 0).sum())
    assert (summary["images_without_kk"] == no_keypoint).all()
    first = table[(table["layer"] == 1) & (table["head"] == 0)]
    assert summary.loc[3, "theta_kk"] == pytest.approx(first["theta_kk"].mean())  # NaN left out

    other = split_dataset(digits_manifest, "val", eval_view(model))
    write_keypoint_store(other, tmp_path / "v.zarr", counter, threads=1, compression_level=1, attributes={})
    with pytest.raises(ValueError, match="holds other images"):
        compute_semantics_store(
            attention,
            tmp_path / "v.zarr",
            tmp_path / "x.zarr",
            dask_settings={"mode": "threads", "workers": 1},
            **settings,
        )


def test_an_interrupted_keypoint_store_resumes_to_the_same_store(tmp_path, digits_manifest):
    from patchinteract.analyses.semantics.keypoints import write_keypoint_store
    from patchinteract.data.manifest import split_dataset
    from patchinteract.models.transforms import eval_view

    views = split_dataset(digits_manifest, "train", eval_view(tiny_vit()))
    counter = KeypointCounter((4, 4), (4, 4), SIFT)
    options = dict(threads=2, compression_level=1, attributes={"split": "train"}, chunk_images=8)
    once = zarr.open_group(write_keypoint_store(views, tmp_path / "once.zarr", counter, **options), mode="r")

    class FailingViews:  # the disk goes away at image 20, in chunk 2: chunks 0 and 1 are kept
        image_ids = views.image_ids

        def __len__(self):
            return len(views)

        def __getitem__(self, index):
            if index >= 20:
                raise OSError("image unreadable")
            return views[index]

    with pytest.raises(OSError):
        write_keypoint_store(FailingViews(), tmp_path / "k.zarr", counter, **options)
    partial = zarr.open_group(tmp_path / "k.zarr.partial", mode="r")
    complete = partial["chunk_complete"][:]
    assert complete[:2].all() and not complete[2:].any()  # queued writes are flushed on the error
    resumed = zarr.open_group(write_keypoint_store(views, tmp_path / "k.zarr", counter, **options), mode="r")
    for name in ("keypoints", "label", "image_id"):
        np.testing.assert_array_equal(once[name][:], resumed[name][:])
    assert not (tmp_path / "k.zarr.partial").exists()


def test_zeroed_patches_take_the_data_sets_mean_colour_where_asked():
    images = torch.randn(2, 3, 16, 16)
    keep = torch.ones(2, 16, dtype=torch.bool)
    keep[:, [0, 9]] = False
    grey = normalised_colour([0.3, 0.3, 0.3], (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    expected = [(0.3 - 0.485) / 0.229, (0.3 - 0.456) / 0.224, (0.3 - 0.406) / 0.225]
    torch.testing.assert_close(grey, torch.tensor(expected))
    filled = zeroed_patches(images, keep, (4, 4), grey)
    for channel in range(3):  # patch 0 (rows 0-3, cols 0-3) and patch 9 (rows 8-11, cols 4-7)
        assert (filled[:, channel, 0:4, 0:4] == grey[channel]).all()
        assert (filled[:, channel, 8:12, 4:8] == grey[channel]).all()
    kept = keep.view(2, 1, 4, 4).repeat_interleave(4, 2).repeat_interleave(4, 3).expand(-1, 3, -1, -1)
    assert torch.equal(filled[kept], images[kept])
    model, labels = tiny_vit(seed=2), torch.randint(0, 5, (2,))
    dataset = torch.utils.data.TensorDataset(images, labels, torch.arange(2))
    scores = np.random.default_rng(1).random((2, 16)).astype(np.float32)
    rankings = masking_rankings(scores, 1, seed=0)
    _, zero = masking_accuracy(model, dataset, rankings, [0.5], "zero", torch.device("cpu"), batch_size=2)
    _, mean = masking_accuracy(model, dataset, rankings, [0.5], "zero", torch.device("cpu"), fill=grey, batch_size=2)
    at_zero = zero["r"] == 0
    pd.testing.assert_frame_equal(zero[at_zero], mean[at_zero])  # r = 0 masks nothing
    assert not np.allclose(np.stack(zero.loc[~at_zero, "p_true"]), np.stack(mean.loc[~at_zero, "p_true"]))


def test_the_data_sets_mean_colour_is_the_mean_of_its_train_images(digits_manifest):
    from patchinteract.data.manifest import mean_colour, read_manifest

    colour = mean_colour(digits_manifest, "train", threads=2)
    table, root = read_manifest(digits_manifest, "train")
    by_hand = np.mean(
        [np.asarray(Image.open(root / p).convert("RGB"), dtype=np.float64).mean((0, 1)) / 255 for p in table["path"]],
        axis=0,
    )
    np.testing.assert_allclose(colour, by_hand, rtol=1e-12)
    assert colour.shape == (3,) and np.ptp(colour) < 1e-12 and 0.1 < colour[0] < 0.6  # grey digits on black
