"""WinFT (eq. 8-13): gradients, the neg_inf identity, E_O counting, ground truth, and learning."""

import numpy as np
import pytest
import torch

import patchinteract.models.winft as winft
from patchinteract.masks.fields import responsive_field_members
from patchinteract.masks.tokens import kept_patches
from patchinteract.masks.windows import bounding_boxes, top_interactions, window_members
from patchinteract.models.vit import create_vit
from patchinteract.models.winft import (
    WindowFreeViT,
    window_free_attention,
    window_interaction_count,
    window_iou,
    window_target,
)
from patchinteract.training.evaluation import evaluate_windows

GRID = (4, 4)


def small_vit(seed=0, attn_layer=None):
    """A tiny ViT; WinFT's are built with attn_layer=WindowFreeAttention."""
    torch.manual_seed(seed)
    model_args = {"embed_dim": 32, "depth": 2, "num_heads": 4} | ({"attn_layer": attn_layer} if attn_layer else {})
    return create_vit("VisionTransformer", 16, 4, 10, model_args).eval()


def winft_vit():
    return small_vit(attn_layer=winft.WindowFreeAttention)


def random_fields(images=3, seed=0):
    rng = np.random.default_rng(seed)
    u, scores = rng.random((images, 16, 16)), rng.random((images, 16))
    return responsive_field_members(window_members(top_interactions(u, 0.1)), kept_patches(scores, 0.25))


def test_bce_gradient_reaches_q_and_k_and_nothing_passes_the_threshold():
    vit = small_vit()
    attention = vit.blocks[0].attn
    x = torch.randn(2, 17, 32)
    out, logits, windows = window_free_attention(attention, x, 1, "multiply")
    assert not windows.requires_grad
    # The attention output does not depend on w' through W: no gradient path from it to the scores.
    assert torch.autograd.grad(out.sum(), logits, allow_unused=True)[0] is None
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.randint(0, 2, logits.shape).float())
    bce.backward()
    q_grad, k_grad, v_grad = attention.qkv.weight.grad.chunk(3)
    assert q_grad.abs().sum() > 0 and k_grad.abs().sum() > 0 and v_grad.abs().sum() == 0


def test_neg_inf_with_all_ones_window_is_plain_attention(monkeypatch):
    vit = small_vit()
    attention = vit.blocks[1].attn
    x = torch.randn(2, 17, 32)
    monkeypatch.setattr(winft, "threshold_windows", lambda scores: torch.ones_like(scores, dtype=torch.bool))
    out, _, _ = window_free_attention(attention, x, 1, "neg_inf")
    with torch.no_grad():
        torch.testing.assert_close(out, attention(x), rtol=1e-5, atol=1e-6)


def test_window_counting_and_iou_on_hand_made_windows():
    first = torch.zeros(2, 3, 3, dtype=torch.bool)
    first[0, 0, :2] = True  # image 0: 2 ones
    first[1] = True  # image 1: 9 ones
    second = torch.zeros(2, 3, 3, dtype=torch.bool)
    second[0] = torch.eye(3, dtype=torch.bool)  # image 0: 3 ones
    assert window_interaction_count([first, second]).tolist() == [2.5, 4.5]
    target = torch.eye(3, dtype=torch.bool).expand(2, 3, 3)
    # image 0: layer 1 IoU 1/4, layer 2 IoU 1; image 1: layer 1 IoU 3/9, layer 2 IoU 0/3
    torch.testing.assert_close(window_iou([first, second], target), torch.tensor([0.625, 1 / 6]))


def test_ground_truth_from_boxes_and_packed_sets():
    field = random_fields()
    boxes = torch.from_numpy(bounding_boxes(field, GRID))
    packed = torch.from_numpy(np.packbits(field, axis=-1))
    assert torch.equal(window_target(packed, GRID, "set"), torch.from_numpy(field))
    box_target = window_target(boxes, GRID, "box")
    assert (box_target | ~torch.from_numpy(field)).all()  # the box contains the set
    xs, ys = np.arange(16) % 4, np.arange(16) // 4
    image, patch = 1, 5
    x_l, y_t, x_r, y_b = boxes[image, patch].tolist()
    expected = (xs >= x_l) & (xs <= x_r) & (ys >= y_t) & (ys <= y_b)
    assert box_target[image, patch].numpy().tolist() == expected.tolist()


@pytest.mark.parametrize("mask_mode", ["multiply", "neg_inf"])
def test_short_training_lowers_the_bce(mask_mode):
    model = WindowFreeViT(
        small_vit(attn_layer=winft.WindowFreeAttention), mask_mode=mask_mode, target_kind="set"
    ).train()
    images, labels = torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))
    target = torch.from_numpy(np.packbits(random_fields(images=8), axis=-1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        logits, bce = model(images, target)
        loss = torch.nn.functional.cross_entropy(logits, labels) + bce
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(bce.item())
    assert losses[-1] < 0.8 * losses[0]
    assert len(model.last_windows) == 2 and model.last_windows[0].shape == (8, 16, 16)


def test_a_patch_always_attends_to_itself_so_no_row_is_empty():
    torch.manual_seed(0)
    # No prefix token: with neg_inf, an empty row of W would leave a query nothing to attend to (NaN).
    vit = create_vit(
        "VisionTransformer",
        16,
        4,
        10,
        {"embed_dim": 32, "depth": 1, "num_heads": 4, "class_token": False, "global_pool": "avg"},
    ).eval()
    attention = vit.blocks[0].attn
    with torch.no_grad():
        attention.qkv.weight[:32] = 0  # Q = 0: every w' = sigmoid(0), constant along each row
        attention.qkv.bias[:32] = 0
    out, logits, windows = window_free_attention(attention, torch.randn(2, 16, 32), 0, "neg_inf")
    assert (logits == 0).all()
    assert torch.equal(windows, torch.eye(16, dtype=torch.bool).expand(2, 16, 16))
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("mask_mode", ["multiply", "neg_inf"])
def test_training_step_under_bfloat16_autocast(mask_mode):
    """What CUDA runs (bf16 autocast), on CPU: a finite loss that matches float32 and trains q and k."""
    from patchinteract.training.loop import training_loss

    model = WindowFreeViT(
        small_vit(attn_layer=winft.WindowFreeAttention), mask_mode=mask_mode, target_kind="set"
    ).train()
    with torch.no_grad():
        model.vit.blocks[0].attn.qkv.weight[:64] *= 30  # 2/3 of the w' logits of layer 1 > 6.5: bf16 sigmoid = 1
    images, labels = torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,))
    target = torch.from_numpy(np.packbits(random_fields(images=4), axis=-1))
    _, bce_float32 = model(images, target)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, bce = model(images, target)
    assert logits.dtype == torch.bfloat16 and bce.dtype == torch.float32
    assert torch.isfinite(bce) and bce.item() == pytest.approx(bce_float32.item(), rel=0.05)
    loss = training_loss(model, images, labels, [target], mixed_precision=True)  # bf16 autocast on CPU
    assert torch.isfinite(loss)
    loss.backward()
    q_grad, k_grad, _ = model.vit.blocks[0].attn.qkv.weight.grad.chunk(3)
    assert q_grad.abs().sum() > 0 and k_grad.abs().sum() > 0
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_evaluation_computes_windows_and_accuracy_without_the_training_loss(monkeypatch):
    model = WindowFreeViT(winft_vit(), target_kind="set")
    target = torch.from_numpy(np.packbits(random_fields(images=6), axis=-1))
    samples = list(zip(torch.randn(6, 3, 16, 16), torch.randint(0, 10, (6,)), range(6), target, strict=True))

    def no_loss(*_):
        raise AssertionError("evaluation computed the training loss")

    monkeypatch.setattr(winft, "window_bce", no_loss)
    metrics, predictions = evaluate_windows(
        model, torch.utils.data.DataLoader(samples, batch_size=4), torch.device("cpu"), keep_first=2
    )
    assert metrics["n_images"] == 6 and 0 <= metrics["top1"] <= 100
    assert predictions["image_id"].tolist() == list(range(6))
    assert metrics["top1"] == 100.0 * predictions["correct"].sum() / 6
    assert 16 <= metrics["eo"] <= 256 and 0 < metrics["window_iou"] <= 1  # W has its diagonal at least
    assert metrics["figure"]["predicted"].shape == (2, 2, 16, 16)
