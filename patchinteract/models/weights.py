"""Weights: read a checkpoint (timm, an original release layout, Hugging Face), convert it to the model, load
strictly (optionally without the head), save as safetensors."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from patchinteract.models import huggingface


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


def checkpoint_state(model: torch.nn.Module, path: Path | str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The checkpoint at ``path`` as ``model``'s state dict, and what was converted on the way.

    A Hugging Face checkpoint (folder, or model.safetensors beside config.json) is renamed to timm's
    keys first; then the model family's own timm conversion (``checkpoint_filter_fn``) runs: position
    embeddings resampled to the model's grid, original DINOv2, OpenAI CLIP and OpenCLIP layouts.
    """
    notes = []
    if huggingface.checkpoint_files(path):
        state, config = huggingface.read_checkpoint(path)
        state = huggingface.timm_state_dict(state, config, distilled=hasattr(model, "dist_token"))
        notes.append(f"converted a Hugging Face {config['model_type']} checkpoint ({len(state)} tensors) to timm keys")
    else:
        state = read_state_dict(path)
    family_filter = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)
    if family_filter is not None:
        before = {k: tuple(v.shape) for k, v in state.items()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # timm says what it resampled through warnings and logs; we say it below
            state = family_filter(dict(state), model)
        after = {k: tuple(v.shape) for k, v in state.items()}
        removed, added = sorted(set(before) - set(after)), sorted(set(after) - set(before))
        if removed or added:
            notes.append(f"timm's {type(model).__name__} conversion: {removed[:5]} became {added[:5]}")
        notes += [
            f"resampled {k} from {before[k]} to {shape}" for k, shape in after.items() if before.get(k, shape) != shape
        ]
    return state, notes


def load_weights(model: torch.nn.Module, path: Path | str, skip_head: bool = False) -> list[str]:
    """Load weights strictly (after :func:`checkpoint_state`'s conversions, which it returns, for the log);
    with ``skip_head`` the classifier head keeps its fresh init."""
    state, notes = checkpoint_state(model, path)
    if skip_head:
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
    expected = model.state_dict()
    wrong_shapes = [
        f"{k} {tuple(v.shape)} (model: {tuple(expected[k].shape)})"
        for k, v in state.items()
        if k in expected and v.shape != expected[k].shape
    ]
    if wrong_shapes:
        raise ValueError(
            f"weights {path} do not fit the configured model: shapes differ for {wrong_shapes[:5]}{fitting(path)}"
        )
    missing, unexpected = model.load_state_dict(state, strict=False)
    allowed_missing = {k for k in model.state_dict() if k.startswith("head.")} if skip_head else set()
    problems = [k for k in missing if k not in allowed_missing]
    if problems or unexpected:
        raise ValueError(
            f"weights {path} do not fit the configured model: missing {problems[:5]}, unexpected {unexpected[:5]}"
            + fitting(path)
        )
    return notes


def fitting(path: Path | str) -> str:
    """For a Hugging Face checkpoint, the experiment settings that fit it (a hint for the error); else ''."""
    files = huggingface.checkpoint_files(path)
    if files is None:
        return ""
    settings = huggingface.timm_settings(json.loads(files[0].read_text()))
    return "; its config.json describes " + ", ".join(f"{k}: {v}" for k, v in settings.items())


def save_weights(model: torch.nn.Module, path: Path | str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path))
