"""Attention capture, weights files, transforms and training helpers."""

import math

import pytest
import torch

from patchinteract.attention.capture import attention_modules, record_attention
from patchinteract.models.transforms import eval_transform
from patchinteract.models.vit import create_vit
from patchinteract.models.weights import load_weights, read_state_dict, save_weights


def small_vit(num_classes=10, **kwargs):
    torch.manual_seed(0)
    args = {"embed_dim": 32, "depth": 3, "num_heads": 2, "mlp_ratio": 2.0} | kwargs
    return create_vit("VisionTransformer", img_size=16, patch_size=4, num_classes=num_classes, model_args=args).eval()


def test_recorded_attention_is_the_softmax_of_each_block():
    model = small_vit()
    images = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        fused_logits = model(images)
        with record_attention(model) as recorder:
            logits = model(images)
    captured = recorder.attention.unbind(1)
    assert recorder.attention.shape == (2, 3, 2, 17, 17) and recorder.attention.dtype == torch.float32
    torch.testing.assert_close(logits, fused_logits, atol=1e-5, rtol=1e-5)
    # Recompute block 0's attention by hand from its input.
    with torch.no_grad():
        x = model.norm_pre(model._pos_embed(model.patch_embed(images)))
        attn = model.blocks[0].attn
        q, k, _ = attn.qkv(model.blocks[0].norm1(x)).reshape(2, 17, 3, 2, 16).permute(2, 0, 3, 1, 4)
        expected = (q @ k.transpose(-2, -1) / math.sqrt(16)).softmax(-1)
    torch.testing.assert_close(captured[0], expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(captured[2].sum(-1), torch.ones(2, 2, 17))
    # Hooks removed and fused attention restored afterwards.
    assert all(m.fused_attn for m in attention_modules(model))
    assert all(not m.attn_drop._forward_hooks for m in attention_modules(model))


@pytest.mark.parametrize("suffix, wrap", [(".pth", "model"), (".pt", None), (".safetensors", None)])
def test_weights_round_trip_through_local_files(tmp_path, suffix, wrap):
    source = small_vit()
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        save_weights(source, path)
    else:
        torch.save({wrap: source.state_dict()} if wrap else source.state_dict(), path)
    target = small_vit()
    torch.nn.init.zeros_(target.head.weight)
    load_weights(target, path)
    images = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(target(images), source(images))
    assert set(read_state_dict(path)) == set(source.state_dict())


def test_weights_for_another_model_give_a_clear_error(tmp_path):
    save_weights(small_vit(depth=2), tmp_path / "w.safetensors")
    with pytest.raises(ValueError, match=r"do not fit the configured model: missing \['blocks\.2"):
        load_weights(small_vit(), tmp_path / "w.safetensors")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_weights(small_vit(), tmp_path / "absent.pth")


def test_head_can_be_skipped_for_initialisation(tmp_path):
    save_weights(small_vit(num_classes=1000), tmp_path / "w.safetensors")
    model = small_vit(num_classes=10)
    load_weights(model, tmp_path / "w.safetensors", skip_head=True)
    with pytest.raises(ValueError, match=r"shapes differ for .*'head.weight \(1000, 32\) \(model: \(10, 32\)\)"):
        load_weights(model, tmp_path / "w.safetensors")


def test_eval_transform_gives_the_model_input_size():
    from PIL import Image

    tensor = eval_transform(small_vit())(Image.new("RGB", (40, 30)))
    assert tensor.shape == (3, 16, 16)
