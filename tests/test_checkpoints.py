"""Weights as users have them: Hugging Face ``transformers`` checkpoints (ViT, DeiT, DINOv2) converted to timm
and compared with the source implementation, timm checkpoints at another image size and original DINOv2 layouts
through timm's own conversion. ``transformers`` is a test dependency only."""

import json

import patchinteract.compat  # noqa: F401  (the torchvision shim, before timm and transformers import torchvision)

import pytest
import timm
import torch

from patchinteract.attention.capture import record_attention
from patchinteract.models.huggingface import checkpoint_problem, timm_settings
from patchinteract.models.vit import create_vit
from patchinteract.models.weights import load_weights

transformers = pytest.importorskip("transformers")

SIZES = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": 16, "patch_size": 4}


def randomised(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter drawn at random (layer scales, norms and biases far from their init), so a tensor
    put in the wrong place changes the output."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    return model.eval()


def hugging_face_models():
    vit = {**SIZES, "intermediate_size": 64, "num_labels": 5}
    return {
        "ViTForImageClassification": transformers.ViTForImageClassification(transformers.ViTConfig(**vit)),
        "ViTModel": transformers.ViTModel(transformers.ViTConfig(**vit)),
        "ViT tanh-GELU": transformers.ViTForImageClassification(
            transformers.ViTConfig(**vit, hidden_act="gelu_pytorch_tanh", qkv_bias=False)
        ),
        "DeiTForImageClassification": transformers.DeiTForImageClassification(transformers.DeiTConfig(**vit)),
        "DeiTForImageClassificationWithTeacher": transformers.DeiTForImageClassificationWithTeacher(
            transformers.DeiTConfig(**vit)
        ),
        "Dinov2Model": transformers.Dinov2Model(transformers.Dinov2Config(**SIZES, mlp_ratio=2, layerscale_value=0.5)),
    }


@pytest.mark.parametrize("name", list(hugging_face_models()))
def test_hugging_face_checkpoints_equal_their_source_in_logits_and_every_attention(tmp_path, name):
    source = randomised(hugging_face_models()[name].to(torch.float64))
    source.set_attn_implementation("eager")  # the attention probabilities are returned by eager attention only
    source.to(torch.float32).save_pretrained(tmp_path)
    source = source.to(torch.float64)
    settings = timm_settings(json.loads((tmp_path / "config.json").read_text()))
    has_head = hasattr(source, "classifier") or hasattr(source, "cls_classifier")
    model = create_vit(
        settings["model"], settings["img_size"], settings["patch_size"], 5 if has_head else 0, settings["model_args"]
    )
    notes = load_weights(model, tmp_path, skip_head=not has_head)
    assert notes[0].startswith("converted a Hugging Face")
    model = model.to(torch.float32).eval()
    images = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = source(pixel_values=images.to(torch.float64), output_attentions=True)
        with record_attention(model) as recorder:
            output = model(images) if has_head else model.forward_features(images)
    reference = expected.logits if has_head else expected.last_hidden_state
    torch.testing.assert_close(output.double(), reference, atol=1e-5, rtol=1e-5)
    attention = torch.stack(expected.attentions, dim=1)  # (image, layer, head, T, T)
    torch.testing.assert_close(recorder.attention.double(), attention, atol=1e-5, rtol=1e-5)


def test_a_hugging_face_checkpoint_that_does_not_fit_names_the_settings_that_do(tmp_path):
    source = transformers.ViTForImageClassification(transformers.ViTConfig(**SIZES, intermediate_size=64, num_labels=5))
    source.save_pretrained(tmp_path)
    model = create_vit("VisionTransformer", 16, 4, 5, {"embed_dim": 32, "depth": 1, "num_heads": 2})
    with pytest.raises(
        ValueError, match=r"its config.json describes model: VisionTransformer, img_size: 16.*'depth': 2"
    ):
        load_weights(model, tmp_path)


def test_hugging_face_checkpoints_that_cannot_be_converted_are_named(tmp_path):
    classifier = transformers.Dinov2ForImageClassification(transformers.Dinov2Config(**SIZES, num_labels=3))
    classifier.save_pretrained(tmp_path / "dinov2")
    assert "Dinov2ForImageClassification" in checkpoint_problem(tmp_path / "dinov2")
    (tmp_path / "empty").mkdir()
    assert "is not a Hugging Face checkpoint folder" in checkpoint_problem(tmp_path / "empty")
    swin = transformers.SwinModel(transformers.SwinConfig(embed_dim=8, depths=[1], num_heads=[1], image_size=16))
    swin.save_pretrained(tmp_path / "swin")
    assert "is a Hugging Face swin checkpoint; convertible are vit, deit, dinov2" in checkpoint_problem(
        tmp_path / "swin"
    )


SMALL = {"embed_dim": 32, "depth": 2, "num_heads": 2, "num_classes": 5}


def timm_own_load(path, img_size: int, checkpoint_classes: int = 5, **args) -> torch.nn.Module:
    """timm's own loading of a local checkpoint (its pretrained path, with the family's conversion); a checkpoint
    without the model's classes loads without its head."""
    overlay = {"file": str(path), "num_classes": checkpoint_classes}
    return timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=True,
        pretrained_cfg_overlay=overlay,
        img_size=img_size,
        patch_size=4,
        **SMALL,
        **args,
    ).eval()


def test_a_timm_checkpoint_at_another_image_size_loads_as_timm_loads_it(tmp_path):
    trained = randomised(create_vit("VisionTransformer", 16, 4, None, SMALL))
    torch.save(trained.state_dict(), tmp_path / "small.pth")
    model = create_vit("VisionTransformer", 24, 4, 5, {k: v for k, v in SMALL.items() if k != "num_classes"})
    notes = load_weights(model, tmp_path / "small.pth")
    assert notes == ["resampled pos_embed from (1, 17, 32) to (1, 37, 32)"]
    images = torch.randn(2, 3, 24, 24, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(images), timm_own_load(tmp_path / "small.pth", 24)(images))


def test_an_original_dinov2_state_dict_is_converted_by_timm_s_dinov2_conversion(tmp_path):
    """Meta's release layout: timm's keys with a mask token, no head; loaded at its own size and resampled."""
    args = {"embed_dim": 32, "depth": 2, "num_heads": 2, "init_values": 1.0}
    backbone = randomised(create_vit("VisionTransformer", 16, 4, 0, args))
    original = backbone.state_dict() | {"mask_token": torch.randn(1, 32)}
    torch.save(original, tmp_path / "dinov2_vits4_pretrain.pth")
    images = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    same_size = create_vit("VisionTransformer", 16, 4, 5, args)
    assert load_weights(same_size, tmp_path / "dinov2_vits4_pretrain.pth", skip_head=True) == [
        "timm's VisionTransformer conversion: ['mask_token'] became []"
    ]
    with torch.no_grad():
        torch.testing.assert_close(same_size.eval().forward_features(images), backbone.forward_features(images))
    larger = create_vit("VisionTransformer", 24, 4, 5, args)
    load_weights(larger, tmp_path / "dinov2_vits4_pretrain.pth", skip_head=True)
    timm_model = timm_own_load(tmp_path / "dinov2_vits4_pretrain.pth", 24, 0, init_values=1.0)
    images = torch.randn(2, 3, 24, 24, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(larger.eval().forward_features(images), timm_model.forward_features(images))


def test_the_module_names_of_transformers_5_are_read_as_save_pretrained_s(tmp_path):
    """A state dict saved from a transformers 5 model in memory (layers.N.attention.q_proj) converts as the
    layout save_pretrained writes (encoder.layer.N.attention.attention.query)."""
    from safetensors.torch import save_file

    source = randomised(transformers.ViTForImageClassification(transformers.ViTConfig(**SIZES, num_labels=5)))
    source.save_pretrained(tmp_path / "saved")
    (tmp_path / "memory").mkdir()
    (tmp_path / "memory/config.json").write_text((tmp_path / "saved/config.json").read_text())
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, tmp_path / "memory/model.safetensors")
    assert any(".q_proj." in key for key in source.state_dict())
    settings = timm_settings(json.loads((tmp_path / "saved/config.json").read_text()))
    models = []
    for layout in ("saved", "memory"):
        model = create_vit("VisionTransformer", 16, 4, 5, settings["model_args"])
        load_weights(model, tmp_path / layout / "model.safetensors")  # the file named directly, beside config.json
        models.append(model.state_dict())
    assert models[0].keys() == models[1].keys()
    assert all(torch.equal(models[0][k], models[1][k]) for k in models[0])


def test_an_eva_checkpoint_at_another_image_size_loads_as_timm_loads_it(tmp_path):
    """Eva's own timm conversion (its absolute position embedding resampled; rotary embeddings are computed,
    not stored) through the same path as a ViT's."""
    args = {"embed_dim": 32, "depth": 2, "num_heads": 2}
    trained = randomised(create_vit("eva02_tiny_patch14_224", 16, 4, 5, args))
    torch.save(trained.state_dict(), tmp_path / "eva.pth")
    model = create_vit("eva02_tiny_patch14_224", 24, 4, 5, args)
    assert load_weights(model, tmp_path / "eva.pth") == ["resampled pos_embed from (1, 17, 32) to (1, 37, 32)"]
    overlay = {"file": str(tmp_path / "eva.pth"), "num_classes": 5}
    timm_model = timm.create_model(
        "eva02_tiny_patch14_224", pretrained=True, pretrained_cfg_overlay=overlay, img_size=24, patch_size=4,
        num_classes=5, **args,
    ).eval()  # fmt: skip
    x = torch.randn(2, 3, 24, 24, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), timm_model(x))
