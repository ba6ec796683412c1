"""Post-softmax attention of every block of a timm ViT, recorded during forward passes."""

from __future__ import annotations

import contextlib

import torch

from patchinteract.models.families import attention_classes


def attention_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The attention module of every block (timm's Attention, or Eva's with its rotary embeddings)."""
    modules = [m for m in model.modules() if isinstance(m, attention_classes())]
    if not modules:
        raise ValueError(f"{type(model).__name__} has no timm attention modules")
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
