"""timm's Eva family (DINOv3, EVA-02, the RoPE ViTs) through the stages' model seam: attention capture equals a
hand-written forward with the rotary embeddings applied to q and k, token dropping keeps every kept token at its
own grid position, and head pruning, DIP and the MAE run on it."""

import patchinteract.compat  # noqa: F401  (the torchvision shim, before timm)

import pytest
import torch

from patchinteract.analyses.heads.pruning import head_importance_batch
from patchinteract.analyses.semantics.mae import MaskedAutoencoder
from patchinteract.attention.capture import record_attention
from patchinteract.models.families import dropped_tokens, model_problem, stem
from patchinteract.models.masked import MaskedViT
from patchinteract.models.vit import build_model, create_vit
from patchinteract.models.winft import WindowFreeAttention, WindowFreeViT

SMALL = {"embed_dim": 32, "depth": 2, "num_heads": 2}
# model: its traits (the sizes above replace the name's)
EVAS = {
    "vit_small_patch16_dinov3": "RoPE (rotate-half), CLS + 4 registers, no absolute embedding, avg pool",
    "eva02_tiny_patch14_224": "RoPE (interleaved) + absolute embedding, SwiGLU, CLS, avg pool",
    "vit_base_patch16_rope_224": "RoPE, CLS, class-token pool",
    "vit_base_patch16_rope_mixed_224": "learned per-block RoPE (mixed), CLS",
}


def eva(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = create_vit(name, 16, 4, 5, SMALL).eval()
    with torch.no_grad():  # layer scales and biases away from their init, so misplaced terms show
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
    return model


def images(count: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.randn(count, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def rotated(x: torch.Tensor, rope: torch.Tensor, half: bool) -> torch.Tensor:
    """RoPE by hand: each (sin, cos) pair rotates one pair of channels, the halves' (half) or neighbours'."""
    sin, cos = rope.tensor_split(2, -1)
    if half:
        first, second = x.chunk(2, dim=-1)
        partner = torch.cat([-second, first], dim=-1)
    else:
        partner = torch.stack([-x[..., 1::2], x[..., ::2]], dim=-1).reshape(x.shape)
    return x * cos + partner * sin


def queries_and_keys_by_hand(attention: torch.nn.Module, x: torch.Tensor, rope: torch.Tensor | None):
    """q and k (image, head, T, d) of one Eva attention module on its input ``x``, rotated by ``rope``."""
    images_, tokens, _ = x.shape
    weight, bias = attention.qkv.weight, attention.qkv.bias
    if getattr(attention, "q_bias", None) is not None:
        bias = torch.cat([attention.q_bias, attention.k_bias, attention.v_bias])
    qkv = torch.nn.functional.linear(x, weight, bias).reshape(images_, tokens, 3, attention.num_heads, -1)
    q, k = (attention.q_norm(qkv[:, :, i].transpose(1, 2)) for i in range(2))
    prefix = attention.num_prefix_tokens
    if rope is not None:
        half = getattr(attention, "rotate_half", False)
        q = torch.cat([q[:, :, :prefix], rotated(q[:, :, prefix:], rope, half)], dim=2)
        k = torch.cat([k[:, :, :prefix], rotated(k[:, :, prefix:], rope, half)], dim=2)
    return q, k


def attention_by_hand(attention: torch.nn.Module, x: torch.Tensor, rope: torch.Tensor | None) -> torch.Tensor:
    """Post-softmax attention (image, head, T, T) of one Eva attention module on its input ``x``."""
    q, k = queries_and_keys_by_hand(attention, x, rope)
    return (q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5).softmax(dim=-1)


def attention_inputs(model: torch.nn.Module) -> tuple[list, list]:
    """Hooks recording every attention module's input and rotary embedding (remove the handles after)."""
    inputs = []
    handles = [
        block.attn.register_forward_pre_hook(lambda _m, args, kwargs: inputs.append((args[0], kwargs.get("rope"))),
                                             with_kwargs=True)
        for block in model.blocks
    ]  # fmt: skip
    return inputs, handles


@pytest.mark.parametrize("name", sorted(EVAS))
def test_the_stages_accept_every_eva_kind(name):
    assert model_problem({"model": name, "img_size": 16, "patch_size": 4, "model_args": SMALL}) is None


@pytest.mark.parametrize("name", sorted(EVAS))
def test_captured_attention_equals_a_hand_written_forward_with_rope(name):
    model = eva(name)
    x = images()
    inputs, handles = attention_inputs(model)
    with torch.no_grad(), record_attention(model) as recorder:
        logits = model(x)
    for handle in handles:
        handle.remove()
    assert recorder.attention.shape == (3, 2, 2, model.num_prefix_tokens + 16, model.num_prefix_tokens + 16)
    for layer, (block, (x_layer, rope)) in enumerate(zip(model.blocks, inputs, strict=True)):
        assert rope is not None  # every kind here is rotary
        with torch.no_grad():
            expected = attention_by_hand(block.attn, x_layer, rope)
            unrotated = attention_by_hand(block.attn, x_layer, None)
        torch.testing.assert_close(recorder.attention[:, layer], expected, atol=1e-5, rtol=1e-4)
        assert not torch.allclose(recorder.attention[:, layer], unrotated, atol=1e-3)  # the rotation matters
    with torch.no_grad():
        torch.testing.assert_close(model(x), logits)  # capture leaves the fused attention as it was


def kept(seed: int = 2) -> torch.Tensor:
    """Six of 16 patches per image, different ones per image."""
    generator = torch.Generator().manual_seed(seed)
    keep = torch.zeros(3, 16, dtype=torch.bool)
    for image in range(3):
        keep[image, torch.randperm(16, generator=generator)[:6]] = True
    return keep


@pytest.mark.parametrize("name", sorted(EVAS))
def test_dropped_tokens_keep_their_own_rotary_positions(name):
    """Dropping no token is the dense model; dropping tokens is a hand-written forward on the kept tokens, each
    with its own grid position's rotary embedding (and not the position of its index in the shorter sequence)."""
    model, x, keep = eva(name), images(), kept()
    with torch.no_grad():
        dense = model.forward_features(x)
        with dropped_tokens(model, torch.ones(3, 16, dtype=torch.bool)):
            torch.testing.assert_close(model.forward_features(x), dense)
        with dropped_tokens(model, keep):
            dropped = model.forward_features(x)
        tokens, arguments = stem(model, x)  # every token, every position
        prefix = model.num_prefix_tokens
        patches = keep.nonzero()[:, 1].view(3, -1)
        by_hand = torch.cat(
            [tokens[:, :prefix], tokens[:, prefix:].gather(1, patches[..., None].expand(-1, -1, 32))], 1
        )
        shortened = by_hand
        for block, argument in zip(model.blocks, arguments, strict=True):
            rope = argument["rope"]
            own = rope[..., patches, :].movedim(-3, 0) if rope.dim() > 2 else rope[patches][:, None]
            by_hand = block(by_hand, rope=own)
            shortened = block(shortened, rope=rope[..., : patches.shape[1], :])
        by_hand, shortened = model.norm(by_hand), model.norm(shortened)
    assert dropped.shape == (3, prefix + 6, 32)
    torch.testing.assert_close(dropped, by_hand, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(dropped, shortened, atol=1e-3)


@pytest.mark.parametrize("name", sorted(EVAS))
def test_awd_and_dip_run_on_eva(name):
    """AWD is an attention mask on Eva's attention (full windows: the plain model); DIP on fewer tokens equals the
    dense definition where it is exact (drop_keys with class-token pooling), and multiply falls back to it."""
    model, x, keep = eva(name), images(), kept()
    full = torch.tensor([0, 0, 3, 3], dtype=torch.int16).expand(3, 16, 4)
    with torch.no_grad():
        torch.testing.assert_close(MaskedViT(model)(x, full), model(x), atol=1e-5, rtol=1e-4)
        for mode in ("multiply", "drop_keys"):
            masked = MaskedViT(model, dip_mode=mode)
            if masked.reduced_is_exact and model.global_pool == "token":
                torch.testing.assert_close(masked(x, full, keep), masked.dense_forward(x, full, keep), atol=1e-5,
                                           rtol=1e-4)  # fmt: skip
        assert not MaskedViT(model, dip_mode="multiply").reduced_is_exact  # rotated keys differ per dropped token


@pytest.mark.parametrize("name", ["vit_small_patch16_dinov3", "eva02_tiny_patch14_224"])
def test_head_pruning_runs_on_eva_and_its_mode_0_is_the_model(name):
    model, x = eva(name), images()
    arrays = head_importance_batch(model, x, torch.tensor([0, 1, 2]), 256, "attention_output")
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(arrays["probabilities"]), model(x).softmax(-1), atol=1e-5,
                                   rtol=1e-4)  # fmt: skip
    assert arrays["pruned_prob"].shape[:2] == (3, 2) and set(arrays["mode"]) == {0, 1, 2, 3, 4, 5}


def test_the_mae_learns_on_eva_visible_tokens():
    """The MAE encodes the visible patches at their own rotary positions and learns: the loss on a fixed batch
    falls."""
    model = eva("vit_small_patch16_dinov3")
    mae = MaskedAutoencoder(model.train(), {"width": 16, "depth": 1, "heads": 2})
    x, masked = images(4), ~torch.cat([kept(3), kept(4)[:1]])
    optimiser = torch.optim.Adam([p for p in mae.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(30):
        optimiser.zero_grad()
        loss = mae(x, masked)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize("name", sorted(EVAS))
def test_winft_in_eva_blocks_predicts_windows_from_the_rotated_queries_and_keys(name):
    """WinFT's attention in Eva blocks keeps the weights and keys of the plain model, and eq. 8's argument is
    (1/k) Σ_h Q_h K_hᵀ over the patch tokens of the rotated queries and keys; training gives a finite loss."""
    plain = eva(name)
    settings = {"model": name, "img_size": 16, "patch_size": 4, "model_args": SMALL}
    vit = build_model(settings, 5, WindowFreeAttention)
    vit.load_state_dict(plain.state_dict())  # strict: the same parameters under the same keys
    winft = WindowFreeViT(vit.eval(), mask_mode="neg_inf")
    inputs, handles = attention_inputs(vit)
    with torch.no_grad():
        winft(images())
    for handle in handles:
        handle.remove()
    prefix = plain.num_prefix_tokens
    for layer, (x, rope) in zip(winft.layers, inputs, strict=True):
        with torch.no_grad():
            q, k = queries_and_keys_by_hand(layer, x, rope)
        q, k = (t[:, :, prefix:].transpose(1, 2).flatten(2) for t in (q, k))
        torch.testing.assert_close(layer.logits, q @ k.transpose(1, 2) / 2, atol=1e-4, rtol=1e-4)
        assert layer.windows.shape == (3, 16, 16) and layer.windows.diagonal(dim1=1, dim2=2).all()
    boxes = torch.tensor([0, 0, 1, 1], dtype=torch.int16).expand(3, 16, 4)
    _, loss = WindowFreeViT(vit.train())(images(), boxes)
    loss.backward()
    assert torch.isfinite(loss) and vit.blocks[0].attn.qkv.weight.grad is not None
