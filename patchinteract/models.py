"""Vision Transformers from timm: creation, weights, transforms, and attention capture.

Importing this module runs ``patchinteract/__init__.py`` first, which installs the
torchvision compatibility shim before ``timm`` is imported here.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import timm
import torch
from safetensors.torch import load_file, save_file
from timm.data import resolve_model_data_config
from timm.layers import Attention
from torchvision import transforms

# Build timm's VisionTransformer class directly with explicit sizes (the demo).
EXPLICIT_VIT = "VisionTransformer"


def is_known_model(name: str) -> bool:
    return name == EXPLICIT_VIT or timm.is_model(name)


def has_pretrained_weights(name: str) -> bool:
    """Whether timm knows hub weights for ``name`` (with or without a ``.tag``)."""
    return name != EXPLICIT_VIT and bool(timm.list_pretrained(name) or timm.list_pretrained(name + ".*"))


def create_vit(
    name: str,
    img_size: int,
    patch_size: int,
    num_classes: int | None,
    model_args: dict | None = None,
    pretrained: bool = False,
) -> timm.models.VisionTransformer:
    """A timm ViT by registry name, or ``VisionTransformer`` with explicit ``model_args``.

    ``num_classes=None`` keeps the model's own head (for fetching pretrained weights).
    """
    model_args = dict(model_args or {})
    if num_classes is not None:
        model_args["num_classes"] = num_classes
    if name == EXPLICIT_VIT:
        model = timm.models.VisionTransformer(img_size=img_size, patch_size=patch_size, **model_args)
    else:
        model = timm.create_model(
            name,
            pretrained=pretrained,
            img_size=img_size,
            patch_size=patch_size,
            **model_args,
        )
    if not isinstance(model, timm.models.VisionTransformer):
        raise ValueError(f"model '{name}' is a {type(model).__name__}, not a timm VisionTransformer")
    return model


def patch_grid(model: timm.models.VisionTransformer) -> tuple[int, int]:
    """(rows, cols) of the patch grid."""
    rows, cols = model.patch_embed.grid_size
    return int(rows), int(cols)


def n_prefix_tokens(model: timm.models.VisionTransformer) -> int:
    """Tokens before the patches (CLS, registers, distillation token)."""
    return int(model.num_prefix_tokens)


# --------------------------------------------------------------------------- weights


def read_state_dict(path: Path | str) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors, or .pth/.pt/.bin (optionally under 'model'/'state_dict')."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        return load_file(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("model", "state_dict", "model_state"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors")
    return state


def load_weights(model: torch.nn.Module, path: Path | str, skip_head: bool = False) -> None:
    """Load weights strictly; with ``skip_head`` the classifier head keeps its fresh init."""
    state = read_state_dict(path)
    if skip_head:
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
    expected = model.state_dict()
    wrong_shapes = [
        f"{k} {tuple(v.shape)} (model: {tuple(expected[k].shape)})"
        for k, v in state.items()
        if k in expected and v.shape != expected[k].shape
    ]
    if wrong_shapes:
        raise ValueError(f"weights {path} do not fit the configured model: shapes differ for {wrong_shapes[:5]}")
    missing, unexpected = model.load_state_dict(state, strict=False)
    allowed_missing = {k for k in model.state_dict() if k.startswith("head.")} if skip_head else set()
    problems = [k for k in missing if k not in allowed_missing]
    if problems or unexpected:
        raise ValueError(
            f"weights {path} do not fit the configured model: missing {problems[:5]}, unexpected {unexpected[:5]}"
        )


def save_weights(model: torch.nn.Module, path: Path | str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path))


# --------------------------------------------------------------------------- transforms


def data_config(model: timm.models.VisionTransformer) -> dict:
    """timm's mean/std/crop_pct for the model, with the input size the model was built for.

    Models built from explicit sizes have no pretrained config: they get no
    centre crop (crop_pct 1), since nothing was trained with one.
    """
    config = dict(resolve_model_data_config(model))
    config["input_size"] = (3, *model.patch_embed.img_size)
    if "crop_pct" not in (getattr(model, "pretrained_cfg", None) or {}):
        config["crop_pct"] = 1.0
    return config


def eval_transform(model: torch.nn.Module):
    """Resize, centre crop and normalise as the model's timm data config says."""
    config = data_config(model)
    size = config["input_size"][-1]
    return transforms.Compose(
        [
            transforms.Resize(int(size / config["crop_pct"]), interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(size),
            transforms.ToTensor(),
            transforms.Normalize(config["mean"], config["std"]),
        ]
    )


def train_transform(model: torch.nn.Module, crop_scale: tuple[float, float]):
    """Random-resized-crop augmentation (the paper's "random crop").

    The horizontal flip (``hflip``) is applied per sample with its masks, by
    :class:`patchinteract.retraining.MaskedSamples`.
    """
    config = data_config(model)
    return transforms.Compose(
        [
            transforms.RandomResizedCrop(
                config["input_size"][-1], scale=tuple(crop_scale), interpolation=transforms.InterpolationMode.BICUBIC
            ),
            transforms.ToTensor(),
            transforms.Normalize(config["mean"], config["std"]),
        ]
    )


# --------------------------------------------------------------------------- attention


def attention_modules(model: torch.nn.Module) -> list[Attention]:
    modules = [m for m in model.modules() if isinstance(m, Attention)]
    if not modules:
        raise ValueError(f"{type(model).__name__} has no timm Attention modules")
    return modules


def set_fused_attention(model: torch.nn.Module, enabled: bool) -> None:
    """Fused attention never materialises the attention matrix; capture needs it off."""
    for module in attention_modules(model):
        module.fused_attn = enabled


class AttentionRecorder:
    """Post-softmax attention of every block from the last forward pass.

    After a forward, ``attention`` is one (batch, layer, head, T, T) tensor of
    ``dtype`` on the model's device. Each block's hook copies (and converts) its
    map straight into that tensor, so no per-layer list is kept or stacked.
    """

    def __init__(self, n_layers: int, dtype: torch.dtype):
        self.n_layers, self.dtype = n_layers, dtype
        self.attention: torch.Tensor | None = None

    def hook(self, layer: int):
        def keep(_module, inputs, _output):
            attn = inputs[0].detach()
            if layer == 0:
                self.attention = attn.new_empty((attn.shape[0], self.n_layers, *attn.shape[1:]), dtype=self.dtype)
            self.attention[:, layer].copy_(attn)

        return keep


@contextlib.contextmanager
def record_attention(model: torch.nn.Module, dtype: torch.dtype = torch.float32):
    """Record post-softmax attention of every block during forward passes (yields an AttentionRecorder).

    Fused attention is switched off inside the context and restored afterwards.
    The hook sits on ``attn_drop``, whose input is the softmax output (identity
    in eval mode).
    """
    modules = attention_modules(model)
    previous = [m.fused_attn for m in modules]
    recorder = AttentionRecorder(len(modules), dtype)
    handles = [m.attn_drop.register_forward_hook(recorder.hook(i)) for i, m in enumerate(modules)]
    set_fused_attention(model, False)
    try:
        yield recorder
    finally:
        for handle in handles:
            handle.remove()
        for module, fused in zip(modules, previous, strict=True):
            module.fused_attn = fused


def select_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)
