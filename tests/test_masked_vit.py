"""The masked ViT: identity at α = 1, β = 0; exact zeros outside windows; SDPA equals explicit softmax;
DIP on fewer tokens equals the dense definition (logits and gradients)."""

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
        model.dense_forward(torch.randn(3, 3, 16, 16), windows, keep)
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
        fused = model.dense_forward(images, windows, keep)
        set_fused_attention(model.vit, False)  # timm's explicit softmax path with the same boolean mask
        explicit = model.dense_forward(images, windows, keep)
    torch.testing.assert_close(fused, explicit, rtol=1e-5, atol=1e-5)


def test_multiply_mode_zeroes_dropped_tokens_at_every_block_input():
    model = small_model(dip_mode="multiply")
    windows, keep = random_masks(beta=0.5)
    seen = []
    hooks = [b.register_forward_pre_hook(lambda _m, args: seen.append(args[0].clone())) for b in model.vit.blocks]
    with torch.no_grad():
        model.dense_forward(torch.randn(3, 3, 16, 16), windows, keep)
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
        model.dense_forward(torch.randn(3, 3, 16, 16), windows, keep)
    attention = recorder.attention
    for image in range(3):
        for key in torch.nonzero(~keep[image]).flatten().tolist():
            column = attention[image, :, :, :, 1 + key]
            others = [q for q in range(17) if q != 1 + key]
            assert (column[:, :, others] == 0).all()  # only its own row still sees it


def randomised_model(global_pool="token", **kwargs):
    """A tiny ViT whose every parameter is random (norm and qkv biases too: with timm's zero biases a
    dropped token's key and value would be 0 and a wrong count of shared copies could go unseen)."""
    torch.manual_seed(1)
    vit = create_vit(
        "VisionTransformer", 16, 4, 10, {"embed_dim": 32, "depth": 3, "num_heads": 2, "global_pool": global_pool}
    )
    with torch.no_grad():
        for parameter in vit.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    return MaskedViT(vit, **kwargs)


def logits_and_gradients(model, forward, images, labels, *masks):
    model.zero_grad(set_to_none=True)
    logits = forward(images, *masks)
    torch.nn.functional.cross_entropy(logits, labels).backward()
    return logits.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("dip_mode", ["multiply", "drop_keys"])
@pytest.mark.parametrize("with_windows", [True, False])
@pytest.mark.parametrize("cls_in_window", [True, False])
def test_dip_on_kept_tokens_equals_the_dense_model_in_logits_and_gradients(dip_mode, with_windows, cls_in_window):
    model = randomised_model(dip_mode=dip_mode, cls_in_window=cls_in_window).train()
    windows, keep = random_masks(alpha=0.08, beta=0.5, images=4, seed=3)
    images, labels = torch.randn(4, 3, 16, 16), torch.tensor([1, 7, 3, 3])
    masks = (windows if with_windows else None, keep)
    dense = logits_and_gradients(model, model.dense_forward, images, labels, *masks)
    reduced = logits_and_gradients(model, model, images, labels, *masks)
    torch.testing.assert_close(reduced[0], dense[0], rtol=1e-5, atol=1e-5)
    assert reduced[1].keys() == dense[1].keys()
    for name, gradient in dense[1].items():
        torch.testing.assert_close(reduced[1][name], gradient, rtol=1e-4, atol=1e-6, msg=name)
    # The dropped tokens matter: the plain model (or AWD alone) gives other logits.
    assert not torch.allclose(model(images, masks[0]).detach(), dense[0], atol=1e-3)


@pytest.mark.parametrize("global_pool", ["avg", "max"])
def test_multiply_on_kept_tokens_pools_the_shared_token_once_per_dropped_patch(global_pool):
    model = randomised_model(global_pool=global_pool, dip_mode="multiply").eval()
    windows, keep = random_masks(alpha=0.08, beta=0.25, images=3, seed=4)
    images = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(
            model(images, windows, keep), model.dense_forward(images, windows, keep), rtol=1e-5, atol=1e-5
        )


def test_drop_keys_on_kept_tokens_averages_the_kept_tokens():
    model = randomised_model(global_pool="avg", dip_mode="drop_keys").eval()
    windows, keep = random_masks(alpha=0.08, beta=0.25, images=3, seed=4)
    images = torch.randn(3, 3, 16, 16)
    final = []
    handle = model.vit.norm.register_forward_hook(lambda _m, _a, out: final.append(out))
    with torch.no_grad():
        logits = model(images, windows, keep)
    handle.remove()
    assert final[0].shape == (3, 1 + 12, 32)  # the class token and the 12 kept patches of 16
    torch.testing.assert_close(logits, model.vit.head(model.vit.fc_norm(final[0][:, 1:].mean(1))))


def test_dip_on_kept_tokens_computes_fewer_tokens_and_needs_equal_counts():
    model = randomised_model(dip_mode="multiply").eval()
    windows, keep = random_masks(alpha=0.08, beta=0.5, images=2, seed=5)
    lengths = []
    handle = model.vit.blocks[0].register_forward_pre_hook(lambda _m, args: lengths.append(args[0].shape[1]))
    with torch.no_grad():
        model(torch.randn(2, 3, 16, 16), windows, keep)
    handle.remove()
    assert lengths == [1 + 8 + 1]  # class token, 8 kept patches of 16, the shared token
    ragged = keep.clone()
    ragged[0, keep[0].nonzero()[0]] = False
    with pytest.raises(ValueError, match="as many patches"):
        model(torch.randn(2, 3, 16, 16), windows, ragged)
    dropout = create_vit(
        "VisionTransformer", 16, 4, 10, {"embed_dim": 32, "depth": 1, "num_heads": 2, "patch_drop_rate": 0.25}
    )
    with pytest.raises(ValueError, match="patch_drop_rate"):
        MaskedViT(dropout)(torch.randn(2, 3, 16, 16), windows, keep)


@pytest.mark.parametrize("dip_mode", ["multiply", "drop_keys"])
def test_registers_behind_a_clip_stem_are_prefix_tokens_of_every_stage(dip_mode):
    """CLS and 4 registers behind a CLIP-style stem (a norm before the blocks, no position embedding on the
    prefix): the capture sees 5 prefix tokens, full windows are the plain model, and DIP on fewer tokens
    equals the dense definition."""
    torch.manual_seed(1)
    options = {"embed_dim": 32, "depth": 3, "num_heads": 2, "reg_tokens": 4, "pre_norm": True, "no_embed_class": True}
    vit = create_vit("VisionTransformer", 16, 4, 10, options)
    with torch.no_grad():
        for parameter in vit.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    model, images = MaskedViT(vit, dip_mode=dip_mode).eval(), torch.randn(3, 3, 16, 16)
    full, everything = random_masks(alpha=1.0, beta=0.0)
    windows, keep = random_masks(alpha=0.08, beta=0.25, images=3, seed=4)
    with torch.no_grad(), record_attention(vit) as recorder:
        plain = vit(images)
    assert recorder.attention.shape == (3, 3, 2, 5 + 16, 5 + 16)
    with torch.no_grad():
        torch.testing.assert_close(model(images, full, everything), plain, rtol=1e-5, atol=1e-6)
        masked = model(images, windows, keep)
        torch.testing.assert_close(masked, model.dense_forward(images, windows, keep), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(masked, plain, atol=1e-3)


@pytest.mark.parametrize("dip_mode", ["multiply", "drop_keys"])
def test_dip_with_an_attention_pool_is_the_dense_model(dip_mode):
    """An attention pool (global_pool: map) attends over every token: DIP runs the dense forward for it."""
    model = randomised_model(global_pool="map", dip_mode=dip_mode).eval()
    windows, keep = random_masks(alpha=0.08, beta=0.5, images=2, seed=7)
    images = torch.randn(2, 3, 16, 16)
    lengths = []
    handle = model.vit.blocks[0].register_forward_pre_hook(lambda _m, args: lengths.append(args[0].shape[1]))
    with torch.no_grad():
        logits = model(images, windows, keep)
        dense = model.dense_forward(images, windows, keep)
    handle.remove()
    assert lengths[0] == 1 + 16  # every token computed
    torch.testing.assert_close(logits, dense, rtol=0, atol=0)
    assert not torch.allclose(logits, model.dense_forward(images, windows))  # DIP did change the output


def test_dip_on_kept_tokens_runs_under_bf16_autocast():
    """The additive mask meets bf16 queries under autocast (what CUDA training uses): no dtype error."""
    model = randomised_model(dip_mode="multiply").train()
    windows, keep = random_masks(alpha=0.08, beta=0.5, images=2, seed=6)
    images = torch.randn(2, 3, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = model(images, windows, keep)
    with torch.no_grad():
        full = model.dense_forward(images, windows, keep)
    low.float().sum().backward()
    assert torch.isfinite(low).all() and (low.float() - full).abs().max() < 0.1
