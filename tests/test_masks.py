"""Windows, DIP and responsive fields against a plain-Python reference written from docs/method.md."""

import math
from fractions import Fraction

import numpy as np
import pytest

from patchinteract.masks.fields import (
    responsive_field_members,
    responsive_field_offset,
    responsive_field_size,
    responsive_field_tendency,
)
from patchinteract.masks.tokens import kept_patches
from patchinteract.masks.windows import attention_windows, top_interactions, window_interactions, window_members


def reference_masks(u, alpha, scores, beta, grid):
    """One image, loops only: windows, O with DIP, keep, and per-patch field size/tendency/offset."""
    rows, cols = grid
    n = rows * cols
    count = max(1, math.floor(Fraction(str(alpha)) * n * n))
    ranked = sorted(range(n * n), key=lambda f: (-u[f // n][f % n], f))  # ties: lower flat index
    chosen = set(ranked[:count])
    dropped = set(sorted(range(n), key=lambda p: (scores[p], p))[: math.floor(Fraction(str(beta)) * n)])
    windows, o, sizes, tendencies, offsets = [], 0, [], [], []
    for p in range(n):
        members = [p] + [i for i in range(n) if p * n + i in chosen and i != p]
        xs, ys = [i % cols for i in members], [i // cols for i in members]
        box = (min(xs), min(ys), max(xs), max(ys))
        windows.append(box)
        if p not in dropped:
            o += (box[2] - box[0] + 1) * (box[3] - box[1] + 1)
        field = [p] + [i for i in members if i != p and i not in dropped]
        fx, fy = [i % cols for i in field], [i // cols for i in field]
        sizes.append(len(field))
        dx, dy = max(fx) - min(fx), max(fy) - min(fy)
        length = math.hypot(dx, dy)
        tendencies.append((dx / length, dy / length) if length else (0.0, 0.0))
        offsets.append((sum(fx) / len(field) - p % cols, sum(fy) / len(field) - p // cols))
    keep = [p not in dropped for p in range(n)]
    return windows, o, keep, sizes, tendencies, offsets


def library_masks(u, alpha, scores, beta, grid):
    members = window_members(top_interactions(u, alpha))
    keep = kept_patches(scores, beta)
    field = responsive_field_members(members, keep)
    windows = attention_windows(u, alpha, grid)
    return (
        windows,
        window_interactions(windows, keep),
        keep,
        responsive_field_size(field),
        responsive_field_tendency(field, grid),
        responsive_field_offset(field, grid),
    )


@pytest.mark.parametrize("grid", [(4, 4), (3, 5)])
@pytest.mark.parametrize("alpha, beta", [(0.1, 0.25), (0.02, 0.5), (0.3, 0.0), (0.004, 0.1), (1.0, 0.2), (0.29, 0.29)])
@pytest.mark.parametrize("ties", [False, True])
def test_masks_match_the_reference(grid, alpha, beta, ties):
    rng = np.random.default_rng(7)
    n = grid[0] * grid[1]
    u = rng.random((3, n, n)).astype(np.float32)
    scores = rng.random((3, n)).astype(np.float32)
    if ties:  # few distinct values: many ties at the threshold, in U and in dip_score
        u, scores = np.round(u * 3) / 3, np.round(scores * 2) / 2
    got = library_masks(u, alpha, scores, beta, grid)
    for image in range(3):
        windows, o, keep, sizes, tendencies, offsets = reference_masks(u[image], alpha, scores[image], beta, grid)
        np.testing.assert_array_equal(got[0][image], windows)
        assert got[1][image] == o
        np.testing.assert_array_equal(got[2][image], keep)
        np.testing.assert_array_equal(got[3][image], sizes)
        np.testing.assert_allclose(got[4][image], tendencies, atol=1e-6)
        np.testing.assert_allclose(got[5][image], offsets, atol=1e-6)


def test_single_top_entry_leaves_most_windows_a_single_patch():
    u = np.zeros((1, 9, 9), np.float32)
    u[0, 4, 8] = 1.0  # the only entry in U' (alpha small enough for T = 1)
    windows = attention_windows(u, 0.01, (3, 3))[0]
    assert windows[4].tolist() == [1, 1, 2, 2]  # patch 4 at (1, 1) with partner 8 at (2, 2)
    others = np.delete(np.arange(9), 4)
    assert (window_interactions(windows[None])[0]) == 8 + 4
    for p in others:
        assert windows[p].tolist() == [p % 3, p // 3, p % 3, p // 3]  # |B_p| = 1: itself only


@pytest.mark.parametrize("grid, expected", [((14, 14), 38_416), ((7, 7), 2_401), ((24, 24), 331_776)])
def test_alpha_one_gives_n_squared(grid, expected):
    n = grid[0] * grid[1]
    u = np.random.default_rng(0).random((2, n, n)).astype(np.float32)
    assert window_interactions(attention_windows(u, 1.0, grid)).tolist() == [expected, expected]


def test_beta_zero_keeps_everything():
    scores = np.random.default_rng(1).random((4, 49))
    assert kept_patches(scores, 0.0).all()
    assert kept_patches(scores, 0.5).sum(axis=1).tolist() == [25] * 4  # floor(0.5 * 49) = 24 dropped


def test_interactions_never_decrease_with_alpha():
    u = np.random.default_rng(2).random((5, 49, 49)).astype(np.float32)
    totals = [window_interactions(attention_windows(u, a, (7, 7))) for a in (0.001, 0.01, 0.05, 0.1, 0.3, 0.6, 1.0)]
    assert all((later >= earlier).all() for earlier, later in zip(totals, totals[1:], strict=False))


# --------------------------------------------------------------------------- horizontal flip

FLIP_GRID = (3, 5)  # not square: x and y cannot be swapped unnoticed


def mirrored_image_interactions(u, scores):
    """U and dip_score of the mirrored image when attention mirrors exactly (the symmetric case)."""
    from patchinteract.masks.mirror import mirrored_patches

    order = mirrored_patches(FLIP_GRID)
    return u[:, order][:, :, order], scores[:, order]


def test_mirrored_patches_moves_columns_and_keeps_rows():
    from patchinteract.masks.mirror import mirrored_patches

    order = mirrored_patches(FLIP_GRID)
    assert order.tolist() == [4, 3, 2, 1, 0, 9, 8, 7, 6, 5, 14, 13, 12, 11, 10]
    assert (order[order] == np.arange(15)).all()  # a flip twice is no flip


def test_masks_of_the_mirrored_image_are_the_mirrored_masks():
    """The symmetric case: masks computed from the mirrored U equal the mirror of the stored masks, exactly."""
    from patchinteract.masks.mirror import mirror_boxes, mirror_packed_members, mirror_patch_values
    from patchinteract.masks.windows import bounding_boxes

    rng = np.random.default_rng(3)
    u, scores = rng.random((4, 15, 15)), rng.random((4, 15))
    mirrored_u, mirrored_scores = mirrored_image_interactions(u, scores)
    windows = attention_windows(u, 0.1, FLIP_GRID)
    assert np.array_equal(attention_windows(mirrored_u, 0.1, FLIP_GRID), mirror_boxes(windows, FLIP_GRID))
    keep = kept_patches(scores, 0.3)
    assert np.array_equal(kept_patches(mirrored_scores, 0.3), mirror_patch_values(keep, FLIP_GRID))
    field = responsive_field_members(window_members(top_interactions(u, 0.1)), keep)
    mirrored_field = responsive_field_members(
        window_members(top_interactions(mirrored_u, 0.1)), kept_patches(mirrored_scores, 0.3)
    )
    assert np.array_equal(
        np.packbits(mirrored_field, axis=-1), mirror_packed_members(np.packbits(field, axis=-1), FLIP_GRID)
    )
    assert np.array_equal(
        bounding_boxes(mirrored_field, FLIP_GRID), mirror_boxes(bounding_boxes(field, FLIP_GRID), FLIP_GRID)
    )
    assert np.array_equal(mirror_boxes(mirror_boxes(windows, FLIP_GRID), FLIP_GRID), windows)


def test_a_flipped_training_sample_carries_its_mirrored_masks():
    import torch

    from patchinteract.masks.mirror import MIRRORS
    from patchinteract.training.retraining import BranchSamples

    rng = np.random.default_rng(0)
    u, scores = rng.random((6, 15, 15)), rng.random((6, 15))
    field = responsive_field_members(window_members(top_interactions(u, 0.2)), kept_patches(scores, 0.2))
    stored = {
        "window": torch.from_numpy(attention_windows(u, 0.2, FLIP_GRID)),
        "keep": torch.from_numpy(kept_patches(scores, 0.2)),
        "field_members": torch.from_numpy(np.packbits(field, axis=-1)),
    }
    images = torch.randn(6, 3, 12, 20)
    dataset = [(images[i], i % 10, i) for i in range(6)]
    samples = BranchSamples(dataset, stored, FLIP_GRID, hflip=True)
    torch.manual_seed(0)
    flipped = 0
    for _ in range(4):
        for index in range(6):
            image, _label, _id, *masks = samples[index]
            is_flipped = not torch.equal(image, images[index])
            if is_flipped:
                assert torch.equal(image, images[index].flip(-1))
            flipped += is_flipped
            for (name, values), mask in zip(stored.items(), masks, strict=True):
                expected = MIRRORS[name](values[index].numpy(), FLIP_GRID) if is_flipped else values[index].numpy()
                assert np.array_equal(mask.numpy(), expected), name
    assert 0 < flipped < 24  # both cases were seen
    unflipped = BranchSamples(dataset, stored, FLIP_GRID, hflip=False)
    assert all(torch.equal(unflipped[i][0], images[i]) for i in range(6))


def test_a_branch_refuses_mask_stores_of_another_alpha(tmp_path):
    """The retraining job checks the stores' own α and β against the values it was given (from the config,
    never read back from a file name): a window store of α 0.2 cannot train the α 0.1 branch."""
    import zarr

    from patchinteract.training.branch_kinds import branch_of
    from patchinteract.training.retraining import MaskMismatchError, load_mask_array

    ids = np.arange(3)
    store = zarr.open_group(tmp_path / "window_a0.2.zarr", mode="w")
    store.create_array("image_id", data=ids)
    store.create_array("window", data=np.zeros((3, 4, 4), np.uint8))
    store.attrs["alpha"] = 0.2
    branch = branch_of("awd", {"cls_in_window": True, "dip_mode": "drop"}, alpha=0.1, beta=0.0)
    with pytest.raises(MaskMismatchError, match=r"alpha 0\.2, but this job's alpha is 0\.1"):
        load_mask_array(tmp_path / "window_a0.2.zarr", "window", ids, branch.values)
    # a store without the attribute (the window store has no β) and the right α load
    same = branch_of("awd", {"cls_in_window": True, "dip_mode": "drop"}, alpha=0.2, beta=0.0)
    assert load_mask_array(tmp_path / "window_a0.2.zarr", "window", ids, same.values).shape == (3, 4, 4)
