"""Weights: read any checkpoint format, load strictly (optionally without the head), save as safetensors."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


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
