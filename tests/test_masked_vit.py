"""The masked ViT: identity at α = 1, β = 0; exact zeros outside windows; SDPA equals explicit softmax."""

import numpy as np
import pytest
import torch

from patchinteract.attention.capture import record_attention, set_fused_attention
from patchinteract.masks.tokens import kept_patches
from patchinteract.masks.windows import attention_windows
from patchinteract.models.masked import MaskedViT, window_attention_mask
from patchinteract.models.vit import create_vit

GRID = (4, 4)


def small_model(**kwargs):
    torch.manual_seed(0)
    vit = create_vit("VisionTransformer", 16, 4, 10, {"embed_dim": 32, "depth": 3, "num_heads": 2})
    return MaskedViT(vit, **kwargs).eval()


def random_masks(alpha=0.05, beta=0.25, images=3, seed=0):
    rng = np.random.default_rng(seed)
    u = rng.random((images, 16, 16)).astype(np.float32)
    windows = torch.from_numpy(attention_windows(u, alpha, GRID))
    keep = torch.from_numpy(kept_patches(rng.random((images, 16)), beta))
    return windows, keep


def test_full_windows_and_no_dropped_tokens_equal_the_plain_model():
    model = small_model()
    images = torch.randn(3, 3, 16, 16)
    windows, keep = random_masks(alpha=1.0, beta=0.0)
    with torch.no_grad():
        plain = model.vit(images)
        torch.testing.assert_close(model(images), plain, rtol=0, atol=0)
        torch.testing.assert_close(model(images, windows, keep), plain, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls_in_window", [True, False])
def test_keys_outside_the_window_get_exactly_zero_attention(cls_in_window):
    model = small_model(cls_in_window=cls_in_window)
    windows, keep = random_masks()
    with torch.no_grad(), record_attention(model.vit) as recorder:
        model(torch.randn(3, 3, 16, 16), windows, keep)
    allowed = window_attention_mask(windows, GRID, 1, cls_in_window=cls_in_window)[:, 0]  # (image, T, T)
    attention = recorder.attention  # (image, layer, head, T, T)
    outside = ~allowed[:, None, None].expand_as(attention)
    assert outside.any() and (attention[outside] == 0).all()
    assert (attention[~outside] > 0).all()  # and nothing inside is lost
    if not cls_in_window:
        assert (attention[:, :, :, 1:, 0] == 0).all()


def test_sdpa_with_mask_equals_explicit_softmax():
    model = small_model(dip_mode="drop_keys")
    windows, keep = random_masks()
    images = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        fused = model(images, windows, keep)
        set_fused_attention(model.vit, False)  # timm's explicit softmax path with the same boolean mask
        explicit = model(images, windows, keep)
    torch.testing.assert_close(fused, explicit, rtol=1e-5, atol=1e-5)


def test_multiply_mode_zeroes_dropped_tokens_at_every_block_input():
    model = small_model(dip_mode="multiply")
    windows, keep = random_masks(beta=0.5)
    seen = []
    hooks = [b.register_forward_pre_hook(lambda _m, args: seen.append(args[0].clone())) for b in model.vit.blocks]
    with torch.no_grad():
        model(torch.randn(3, 3, 16, 16), windows, keep)
    for hook in hooks:
        hook.remove()
    assert len(seen) == 3
    dropped = ~keep
    for block_input in seen:
        patches = block_input[:, 1:]
        assert (patches[dropped] == 0).all() and (patches[~dropped].abs().sum(-1) > 0).all()


def test_drop_keys_removes_dropped_patches_as_keys():
    model = small_model(dip_mode="drop_keys")
    windows, keep = random_masks(alpha=1.0, beta=0.5)
    with torch.no_grad(), record_attention(model.vit) as recorder:
        model(torch.randn(3, 3, 16, 16), windows, keep)
    attention = recorder.attention
    for image in range(3):
        for key in torch.nonzero(~keep[image]).flatten().tolist():
            column = attention[image, :, :, :, 1 + key]
            others = [q for q in range(17) if q != 1 + key]
            assert (column[:, :, others] == 0).all()  # only its own row still sees it
