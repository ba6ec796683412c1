"""Checkpoints saved by Hugging Face ``transformers`` (ViT, DeiT, DINOv2) as timm ViT state dicts.

A folder with ``config.json`` and ``model.safetensors`` (what ``save_pretrained`` writes), or that
``model.safetensors`` named directly, is read with safetensors alone: ``transformers`` is not needed
at run time. Keys are renamed to timm's ``VisionTransformer`` (query, key and value joined into
``qkv``), and :func:`timm_settings` says which timm model the checkpoint is, from ``config.json``.
Both ``save_pretrained``'s layout (``encoder.layer.N.attention.attention.query``) and the module
names of transformers 5 (``layers.N.attention.q_proj``) are read.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where tensors are joined: the config check reads only config.json
    import torch

# model_type in config.json: what its state dict holds beyond the shared ViT layout.
MODEL_TYPES = ("vit", "deit", "dinov2")
# Tensors with no place in a classifying timm ViT: masked-image-modelling's mask token, ViTModel's tanh pooler.
UNUSED = re.compile(r"^(embeddings\.mask_token|pooler\.dense\.(weight|bias))$")

# (pattern, replacement) over keys without the model prefix; the first match wins.
BLOCK = r"^(?:encoder\.layer|layers)\.(\d+)\."  # a block, in either layout
RENAMES = [
    (r"^embeddings\.cls_token$", "cls_token"),
    (r"^embeddings\.position_embeddings$", "pos_embed"),
    (r"^embeddings\.patch_embeddings\.projection\.(weight|bias)$", r"patch_embed.proj.\1"),
    (BLOCK + r"(?:layernorm_before|norm1)\.(weight|bias)$", r"blocks.\1.norm1.\2"),
    (BLOCK + r"(?:layernorm_after|norm2)\.(weight|bias)$", r"blocks.\1.norm2.\2"),
    (BLOCK + r"attention\.(?:output\.dense|o_proj)\.(weight|bias)$", r"blocks.\1.attn.proj.\2"),
    (BLOCK + r"(?:intermediate\.dense|mlp\.fc1)\.(weight|bias)$", r"blocks.\1.mlp.fc1.\2"),
    (BLOCK + r"(?:output\.dense|mlp\.fc2)\.(weight|bias)$", r"blocks.\1.mlp.fc2.\2"),
    (BLOCK + r"layer_scale([12])\.lambda1$", r"blocks.\1.ls\2.gamma"),
    (r"^layernorm\.(weight|bias)$", r"norm.\1"),
    (r"^(?:classifier|cls_classifier)\.(weight|bias)$", r"head.\1"),
    (r"^distillation_classifier\.(weight|bias)$", r"head_dist.\1"),
]
QKV_PART = re.compile(BLOCK + r"attention\.(?:attention\.(query|key|value)|([qkv])_proj)\.(weight|bias)$")
QKV_ORDER = {"query": 0, "key": 1, "value": 2, "q": 0, "k": 1, "v": 2}
# hidden_act in config.json: timm's act_layer name (GELU, timm's default, needs none).
ACTIVATIONS = {"gelu": None, "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "quick_gelu": "quick_gelu"}


def checkpoint_files(path: Path | str) -> tuple[Path, Path] | None:
    """(config.json, model.safetensors) of a Hugging Face checkpoint at ``path`` (its folder, or its
    model.safetensors beside config.json); None when ``path`` is not one."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    config, weights = folder / "config.json", (folder / "model.safetensors" if path.is_dir() else path)
    if weights.suffix != ".safetensors" or not config.is_file():
        return None
    try:
        model_type = json.loads(config.read_text()).get("model_type")
    except ValueError:
        return None
    return (config, weights) if model_type is not None else None


def checkpoint_problem(path: Path | str) -> str | None:
    """What keeps the Hugging Face checkpoint at ``path`` from being converted; None when nothing does."""
    files = checkpoint_files(path)
    if files is None:
        return f"'{path}' is not a Hugging Face checkpoint folder (config.json with model_type, model.safetensors)"
    config_file, weights = files
    config = json.loads(config_file.read_text())
    if config["model_type"] not in MODEL_TYPES:
        return f"'{path}' is a Hugging Face {config['model_type']} checkpoint; convertible are {', '.join(MODEL_TYPES)}"
    if not weights.is_file():
        return f"'{path}' has config.json but no {weights.name}"
    if config.get("use_swiglu_ffn"):
        return f"'{path}' is a DINOv2 with a SwiGLU MLP, which timm's VisionTransformer Block does not build"
    if config.get("hidden_act", "gelu") not in ACTIVATIONS:
        return f"'{path}' uses activation '{config['hidden_act']}'; convertible are {', '.join(ACTIVATIONS)}"
    if config.get("num_channels", 3) != 3:
        return f"'{path}' takes {config['num_channels']} input channels; the stages read RGB images"
    if "Dinov2ForImageClassification" in config.get("architectures", []):
        return (
            f"'{path}' is a Dinov2ForImageClassification, whose head reads the class token and the mean patch "
            "token together (no timm pooling does): use its backbone as train_baseline.init"
        )
    return None


def timm_settings(config: dict) -> dict:
    """The experiment settings (model, img_size, patch_size, model_args) of the timm ViT that a Hugging Face
    ``config.json`` (as a dict) describes, without the number of classes."""
    kind = config["model_type"]
    args = {
        "embed_dim": config["hidden_size"],
        "depth": config["num_hidden_layers"],
        "num_heads": config["num_attention_heads"],
        "mlp_ratio": config["mlp_ratio"] if kind == "dinov2" else config["intermediate_size"] / config["hidden_size"],
        "qkv_bias": config.get("qkv_bias", True),
        "layer_norm_eps": config.get("layer_norm_eps", 1e-6 if kind == "dinov2" else 1e-12),
    }
    if ACTIVATIONS.get(config.get("hidden_act", "gelu")):
        args["act_layer"] = ACTIVATIONS[config["hidden_act"]]
    model = "VisionTransformer"
    if kind == "dinov2":
        args["init_values"] = config.get("layerscale_value", 1.0)
    if kind == "deit":
        if "DeiTForImageClassificationWithTeacher" in config.get("architectures", []):
            model = "deit_tiny_distilled_patch16_224"  # timm's distilled class; the sizes above replace the name's
        else:
            args["reg_tokens"] = 1  # the distillation token: a second prefix token no head reads
    return {"model": model, "img_size": config["image_size"], "patch_size": config["patch_size"], "model_args": args}


def timm_state_dict(state: dict[str, torch.Tensor], config: dict, distilled: bool) -> dict[str, torch.Tensor]:
    """``state`` (a Hugging Face ViT, DeiT or DINOv2 checkpoint) under timm VisionTransformer keys.

    ``distilled``: the model is timm's distilled DeiT (the distillation token is ``dist_token``, else
    ``reg_token``). Raises ValueError naming any tensor that has no place in it.
    """
    import torch

    prefix = f"{config['model_type']}."
    state = {k.removeprefix(prefix): v for k, v in state.items()}
    out, parts, unplaced = {}, {}, []
    for key, value in state.items():
        if UNUSED.match(key):
            continue
        if key == "embeddings.distillation_token":
            out["dist_token" if distilled else "reg_token"] = value
        elif match := QKV_PART.match(key):
            layer, name, short, kind = match.groups()
            parts.setdefault((int(layer), kind), [None] * 3)[QKV_ORDER[name or short]] = value
        elif renamed := next((re.sub(p, r, key) for p, r in RENAMES if re.match(p, key)), None):
            out[renamed] = value
        else:
            unplaced.append(key)
    for (layer, kind), (q, k, v) in parts.items():
        if q is None or k is None or v is None:
            unplaced.append(f"layer {layer} attention {kind} (query, key and value incomplete)")
        else:
            out[f"blocks.{layer}.attn.qkv.{kind}"] = torch.cat([q, k, v])
    if unplaced:
        raise ValueError(f"Hugging Face tensors with no place in a timm ViT: {unplaced[:5]}")
    return out


def read_checkpoint(path: Path | str) -> tuple[dict[str, torch.Tensor], dict]:
    """(state dict, config.json) of the Hugging Face checkpoint at ``path``; ValueError if it cannot be converted."""
    from safetensors.torch import load_file

    problem = checkpoint_problem(path)
    if problem:
        raise ValueError(problem)
    config_file, weights = checkpoint_files(path)
    return load_file(weights), json.loads(config_file.read_text())
