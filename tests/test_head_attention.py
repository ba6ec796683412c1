"""Li et al.'s attention measures: k-hop strength (eq. 7) against a loop, binarised patterns, the
autoencoder and clusters on planted patterns, and the head-attention store (Dask == streaming)."""

import patchinteract.compat  # noqa: F401

import numpy as np
import pytest
import torch
import zarr
from sklearn.metrics import adjusted_rand_score

from patchinteract.analyses.heads.autoencoder import BinarisedPatterns, PatternAutoencoder, encode_patterns
from patchinteract.analyses.heads.head_attention_store import strength_tables
from patchinteract.analyses.heads.patterns import (
    binarised_matrices,
    cls_pattern,
    cluster_codes,
    pattern_name,
    pattern_scores,
    top_count,
    top_entries,
    tsne_layout,
)
from patchinteract.analyses.heads.sample import image_subset
from patchinteract.analyses.heads.strength import head_measures, strength_entropy
from patchinteract.training.loop import Recipe, reconstruction, train_model


def random_attention(shape, tokens, seed=0):
    logits = np.random.default_rng(seed).normal(size=(*shape, tokens, tokens)) * 2
    weights = np.exp(logits)
    return (weights / weights.sum(-1, keepdims=True)).astype(np.float32)


def strength_loop(matrix, grid):
    rows, cols = grid
    n = rows * cols
    strength = []
    for k in range(max(grid)):
        per_patch = []
        for q in range(n):
            ring = [key for key in range(n) if max(abs(q // cols - key // cols), abs(q % cols - key % cols)) == k]
            if ring:
                per_patch.append(sum(matrix[q, key] for key in ring) / len(ring))
        strength.append(np.mean(per_patch))
    return np.array(strength)


def distance_loop(matrix, grid):
    cols, n = grid[1], grid[0] * grid[1]
    return np.mean(
        [sum(matrix[q, k] * np.hypot(q // cols - k // cols, q % cols - k % cols) for k in range(n)) for q in range(n)]
    )


@pytest.mark.parametrize("grid, prefix", [((3, 5), 1), ((4, 2), 0), ((1, 4), 2), ((3, 3), 1)])
def test_strength_and_distance_match_a_loop_on_any_grid(grid, prefix):
    n = grid[0] * grid[1]
    attn = random_attention((2, 3), prefix + n, seed=n)
    strength, distance = head_measures(attn, prefix, grid)
    assert strength.shape == (2, 3, max(grid))
    for image in range(2):
        for head in range(3):
            patches = attn[image, head, prefix:, prefix:]
            np.testing.assert_allclose(strength[image, head], strength_loop(patches, grid), rtol=1e-5)
            np.testing.assert_allclose(distance[image, head], distance_loop(patches, grid), rtol=1e-5)


def test_border_patches_count_only_for_their_non_empty_rings():
    # 2 x 3 grid; every patch attends to the top-left patch (0, 0) only.
    grid = (2, 3)
    matrix = np.zeros((6, 6), np.float32)
    matrix[:, 0] = 1.0
    strength, distance = head_measures(matrix[None], 0, grid)
    # k=0: patch 0 itself (1 of the 6 patches). k=1: all 6 patches have a 1-ring; patch 0 lies on those
    # of patches 1 (ring of 5), 3 (of 3) and 4 (of 5). k=2: only patches 0, 2, 3, 5 have a 2-ring (of 2);
    # patch 0 lies on those of 2 and 5.
    np.testing.assert_allclose(strength[0], [1 / 6, (1 / 5 + 1 / 3 + 1 / 5) / 6, (1 / 2 + 1 / 2) / 4], rtol=1e-6)
    np.testing.assert_allclose(distance[0], (0 + 1 + 2 + 1 + np.sqrt(2) + np.sqrt(5)) / 6, rtol=1e-6)


def test_entropy_is_zero_for_self_attention_and_one_for_equal_strengths():
    assert strength_entropy(np.array([[1.0, 0.0, 0.0]]))[0] == 0.0
    np.testing.assert_allclose(strength_entropy(np.array([[0.2, 0.2, 0.2, 0.2]]))[0], 1.0, rtol=1e-6)
    self_attention = np.eye(12, dtype=np.float32)[None]
    assert strength_entropy(head_measures(self_attention, 0, (3, 4))[0])[0] == 0.0


def test_cls_pattern_and_top_entries():
    attn = random_attention((2,), 1 + 6, seed=3)
    pattern = cls_pattern(attn, 1)
    assert pattern.shape == (2, 13)
    np.testing.assert_array_equal(pattern[1, 7:], attn[1, 1:, 0])
    count = top_count(6, 0.1)
    assert count == 3 and top_count(6, 0.0001) == 1
    top = top_entries(attn, 1, count)
    flat = attn[:, 1:, 1:].reshape(2, -1)
    for image in range(2):
        assert set(top[image]) == set(np.argsort(-flat[image], kind="stable")[:count])
    ties = np.zeros((1, 4, 4), np.float32)
    ties[0, 1, 1] = ties[0, 2, 2] = ties[0, 3, 0] = 0.5  # three equal maxima, two kept: the lower indices
    np.testing.assert_array_equal(top_entries(ties, 0, 2)[0], [5, 10])
    dense = binarised_matrices(top, 6)
    assert dense.shape == (2, 6, 6) and dense.sum() == 2 * count


GRID = (6, 6)
N = 36


def planted(kind, rng):
    """A noisy attention matrix with one planted pattern."""
    matrix = np.zeros((N, N))
    for q in range(N):
        row, col = divmod(q, GRID[1])
        if kind == "diagonal":
            matrix[q, q] = 1
        elif kind == "off_diagonal_w":  # attend to the patch above (the top row to itself)
            matrix[q, q - GRID[1] if row else q] = 1
        elif kind == "vertical":  # everyone attends to patch 7
            matrix[q, 7] = 1
        elif kind == "block":  # every patch attends to its whole grid row
            matrix[q, row * GRID[1] : (row + 1) * GRID[1]] = 1
    matrix = matrix + 0.05 * rng.random((N, N))
    return (matrix / matrix.sum(1, keepdims=True)).astype(np.float32)


def test_planted_patterns_are_clustered_apart_and_named():
    kinds = ["diagonal", "off_diagonal_w", "vertical", "block"]
    rng = np.random.default_rng(0)
    truth = np.repeat(np.arange(4), 40)
    attention = np.stack([planted(kinds[t], rng) for t in truth])
    top = top_entries(attention, 0, top_count(N, 1 / N))  # 36 entries: one per query on average
    patterns = BinarisedPatterns(top, N)
    torch.manual_seed(0)
    model = PatternAutoencoder(N, code_size=8, ones=top.shape[-1])
    recipe = Recipe.from_config({"epochs": 15, "lr": 3e-3, "batch_size": 32, "optimizer": "adamw"})
    before = model(torch.stack([patterns[i][0] for i in range(len(patterns))])).item()
    summary = train_model(model, patterns, recipe, torch.device("cpu"), seed=0, objective=reconstruction)
    assert summary["final_loss"] < 0.5 * before
    codes = encode_patterns(model, patterns, torch.device("cpu"), batch_size=64)
    clusters = cluster_codes(codes, 4, seed=0)
    assert adjusted_rand_score(truth, clusters) > 0.95
    dense = binarised_matrices(top, N)
    for cluster in range(4):
        members = clusters == cluster
        kind = kinds[np.bincount(truth[members]).argmax()]
        scores = pattern_scores(dense[members].mean(0), GRID)
        assert max(scores, key=scores.get) == kind, (kind, scores)
        assert pattern_name(scores).split("+")[0] == kind
    assert pattern_name(dict.fromkeys(scores, 0.0)) == "diffuse"


def test_tsne_layout_is_seeded_and_separates_groups():
    rng = np.random.default_rng(0)
    features = np.concatenate([rng.normal(0, 1, (60, 10)), rng.normal(8, 1, (60, 10))])
    first, second = tsne_layout(features, 30, seed=1, iterations=500), tsne_layout(features, 30, seed=1, iterations=500)
    np.testing.assert_array_equal(first, second)
    assert first.shape == (120, 2)
    # The two groups' centres lie further apart than the groups' own spread.
    a, b = first[:60], first[60:]
    assert np.linalg.norm(a.mean(0) - b.mean(0)) > 3 * max(a.std(0).max(), b.std(0).max())


def test_image_subset_is_seeded_sorted_and_checked():
    np.testing.assert_array_equal(image_subset(5, "all", 0), np.arange(5))
    chosen = image_subset(100, 10, seed=3)
    assert len(set(chosen)) == 10 and (np.diff(chosen) > 0).all()
    np.testing.assert_array_equal(chosen, image_subset(100, 10, seed=3))
    with pytest.raises(ValueError, match="heads.images: 11 images requested, but the split has 10"):
        image_subset(10, 11, 0)


def test_strength_tables_are_long_and_keyed(tmp_path):
    store = zarr.open_group(tmp_path / "h.zarr", mode="w")
    strength = np.random.default_rng(0).random((2, 3, 4, 5)).astype(np.float32)
    store["strength"], store["mean_distance"] = strength, strength.sum(-1)
    store["image_id"] = np.array([7, 9])
    per_hop, per_head = strength_tables(tmp_path / "h.zarr")
    assert len(per_hop) == 2 * 3 * 4 * 5 and len(per_head) == 2 * 3 * 4
    row = per_hop.query("image_id == 9 and layer == 2 and head == 1 and hop == 3")
    assert row["strength"].item() == strength[1, 2, 1, 3]
    head = per_head.query("image_id == 9 and layer == 2 and head == 1")
    np.testing.assert_allclose(head["entropy"].item(), strength_entropy(strength[1, 2, 1]), rtol=1e-6)


def test_dask_head_store_and_pattern_tables_without_a_prefix_token(tmp_path):
    """A model without CLS on a non-square grid: the store has no CLS patterns, the CLS layout is NaN."""
    from patchinteract.analyses.heads.head_attention_store import compute_head_store
    from patchinteract.analyses.heads.head_tables import pattern_tables
    from patchinteract.stores.chunked import ArraySpec, write_arrays
    from patchinteract.stores.specs import ATTENTION_DIMENSIONS, PER_IMAGE_SPECS

    grid, n_images = (2, 3), 9
    attn = random_attention((n_images, 2, 2), 6, seed=5).astype(np.float16)
    arrays = {
        "attn": attn,
        "label": np.zeros(n_images, np.int64),
        "prediction": np.zeros(n_images, np.int64),
        "image_id": np.arange(n_images) + 50,
    }
    specs = {"attn": ArraySpec(attn.shape[1:], "float16", ATTENTION_DIMENSIONS), **PER_IMAGE_SPECS}
    write_arrays(tmp_path / "attention.zarr", arrays, specs, {"n_prefix_tokens": 0, "grid": list(grid)})
    images = np.array([1, 2, 4, 8])
    compute_head_store(
        tmp_path / "attention.zarr", tmp_path / "heads.zarr", images, 0.1, dask={"mode": "threads", "workers": 2}
    )
    store = zarr.open_group(tmp_path / "heads.zarr", mode="r")
    assert "cls_pattern" not in store and store.attrs["top_count"] == 3
    np.testing.assert_array_equal(store["image_id"][:], images + 50)
    np.testing.assert_allclose(store["strength"][:], head_measures(attn[images], 0, grid)[0], rtol=1e-6)
    np.testing.assert_array_equal(store["patch_top"][:], top_entries(attn[images], 0, 3))
    codes = np.random.default_rng(0).normal(size=(4, 2, 2, 3)).astype(np.float32)
    patterns, clusters = pattern_tables(
        tmp_path / "heads.zarr", codes, perplexity=30, n_clusters=2, seed=0, iterations=500
    )
    assert len(patterns) == 16 and patterns["cls_x"].isna().all() and patterns["patch_x"].notna().all()
    assert clusters["size"].sum() == 16


def test_best_worst_sample_takes_the_best_and_worst_classes_with_ties_by_index():
    import pandas as pd

    from patchinteract.analyses.heads.sample import analysed_images, best_worst_classes

    # per-class top-1: class 0: 100, 1: 50, 2: 100, 3: 0, 4: 50, 5: 0
    correct = {0: [1, 1], 1: [1, 0], 2: [1, 1], 3: [0, 0], 4: [0, 1], 5: [0, 0]}
    predictions = pd.DataFrame(
        [(label, bool(c)) for label, values in correct.items() for c in values], columns=["label", "correct"]
    )
    chosen = best_worst_classes(100.0 * predictions.groupby("label")["correct"].mean(), 4)
    assert chosen["class"].tolist() == [0, 2, 3, 5] and chosen["group"].tolist() == ["best"] * 2 + ["worst"] * 2
    assert best_worst_classes(100.0 * predictions.groupby("label")["correct"].mean(), 3)["class"].tolist() == [0, 2, 3]
    with pytest.raises(ValueError, match="heads.sample.classes: 7 classes requested, but .* have 6"):
        best_worst_classes(100.0 * predictions.groupby("label")["correct"].mean(), 7)
    # A split of 6 classes with 3 images each (class 5 only 2): positions in split order, seeded within each class.
    labels = [0, 1, 2, 3, 4, 5] * 3
    split = pd.DataFrame({"image_id": np.arange(100, 100 + len(labels)), "label": labels[:-1] + [0]})
    split["class_name"] = [f"folder{label}" for label in split["label"]]
    sample = {"kind": "best_worst", "classes": 4, "per_class": 2}
    images, classes = analysed_images(split, predictions, sample, "all", seed=0, split="val")
    assert classes.to_dict("list") == {
        "class": [0, 2, 3, 5],
        "name": ["folder0", "folder2", "folder3", "folder5"],
        "top1": [100.0, 100.0, 0.0, 0.0],
        "group": ["best", "best", "worst", "worst"],
        "images": [2, 2, 2, 2],
    }
    assert (np.diff(images["position"]) > 0).all() and set(images["label"]) == {0, 2, 3, 5}
    np.testing.assert_array_equal(images["image_id"], split["image_id"].to_numpy()[images["position"]])
    again, _ = analysed_images(split, predictions, sample, "all", seed=0, split="val")
    assert again.equals(images)
    with pytest.raises(ValueError, match="heads.sample.per_class: 3 images per class requested, but class 5 has 2"):
        analysed_images(split, predictions, sample | {"per_class": 3}, "all", seed=0, split="val")
    everything, _ = analysed_images(split, predictions, sample | {"per_class": "all"}, "all", seed=0, split="val")
    assert len(everything) == 4 + 3 + 3 + 2  # class 0 took the last image
    random, classes = analysed_images(split, predictions, {"kind": "random"}, 5, seed=1, split="val")
    assert len(random) == 5 and set(classes["group"]) == {"random"} and classes["images"].sum() == 5
