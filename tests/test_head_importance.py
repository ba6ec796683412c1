"""Head importance by pruning (Li et al. eq. 3-6): the batched variants against a hand-written ViT forward."""

import patchinteract.compat  # noqa: F401

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F

from patchinteract.analyses.heads.pruning import (
    ACTIVATIONS,
    PRUNING_MODES,
    head_importance,
    head_importance_batch,
    region_masks,
)

LAYERS, HEADS, DIM, CLASSES = 3, 4, 32, 7
PRUNING = {"variants_per_pass": 256, "activation": "attention_output"}


def tiny_vit(seed=0, **options):
    torch.manual_seed(seed)
    model = timm.models.VisionTransformer(
        img_size=16,
        patch_size=4,
        embed_dim=DIM,
        depth=LAYERS,
        num_heads=HEADS,
        mlp_ratio=2.0,
        num_classes=CLASSES,
        **options,
    )
    # Larger than timm's init (std 0.02), so that pruning one head visibly moves the outputs.
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.2 * torch.randn_like(parameter))
    return model.eval()


def images_and_labels(n=3, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 16, 16, generator=generator), torch.tensor([0, 3, 6][:n])


def hand_written_forward(model, images, prune_layer, prune_head, pruned_region):
    """ViT forward written out from the parameters, with head ``prune_head`` of block ``prune_layer``
    multiplied by 1 - ``pruned_region`` (T, T) after its softmax. Returns (probabilities, {activation: that
    block's z of eq. 2, the attention output after W_O and its bias, or its output})."""
    b = images.shape[0]
    x = F.conv2d(images, model.patch_embed.proj.weight, model.patch_embed.proj.bias, stride=4)
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([model.cls_token.expand(b, -1, -1), x], 1) + model.pos_embed
    head_dim, activations = DIM // HEADS, {}
    for index, block in enumerate(model.blocks):
        h = F.layer_norm(x, (DIM,), block.norm1.weight, block.norm1.bias, block.norm1.eps)
        qkv = (h @ block.attn.qkv.weight.T + block.attn.qkv.bias).reshape(b, -1, 3, HEADS, head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        attention = ((q @ k.transpose(-2, -1)) * head_dim**-0.5).softmax(-1)
        if index == prune_layer:
            attention[:, prune_head] = attention[:, prune_head] * (1 - pruned_region.float())
        heads = (attention @ v).transpose(1, 2).reshape(b, -1, DIM)
        z = heads @ block.attn.proj.weight.T + block.attn.proj.bias  # eq. 2
        x = x + z
        h = F.layer_norm(x, (DIM,), block.norm2.weight, block.norm2.bias, block.norm2.eps)
        x = x + F.gelu(h @ block.mlp.fc1.weight.T + block.mlp.fc1.bias) @ block.mlp.fc2.weight.T + block.mlp.fc2.bias
        if index == prune_layer:
            activations = {"attention_output": z, "block_output": x}
    x = F.layer_norm(x, (DIM,), model.norm.weight, model.norm.bias, model.norm.eps)
    return (x[:, 0] @ model.head.weight.T + model.head.bias).softmax(-1), activations


def variant(arrays, head, mode):
    matches = np.flatnonzero((arrays["head"] == (-1 if mode == 0 else head)) & (arrays["mode"] == mode))
    return int(matches.item())


@pytest.mark.parametrize("activation", ACTIVATIONS)
@torch.no_grad()
def test_pruned_variants_match_a_hand_written_forward_in_every_mode(activation):
    model = tiny_vit()
    images, labels = images_and_labels()
    # several passes per layer
    arrays = head_importance_batch(model, images, labels, variants_per_pass=10, activation=activation)
    unpruned, _ = hand_written_forward(model, images, -1, 0, torch.zeros(17, 17))
    np.testing.assert_allclose(arrays["probabilities"], unpruned.numpy(), atol=1e-5)
    regions = region_masks(17, 1)
    for layer, head in [(0, 2), (1, 0), (2, 3)]:
        _, unpruned_activations = hand_written_forward(model, images, layer, head, torch.zeros(17, 17))
        unpruned_output = unpruned_activations[activation]
        for mode, pruned_regions in PRUNING_MODES.items():
            region = torch.zeros(17, 17, dtype=torch.bool)
            for name in pruned_regions:
                region |= regions[name]
            probabilities, activations = hand_written_forward(model, images, layer, head, region)
            output = activations[activation]
            v = variant(arrays, head, mode)
            expected_prob = unpruned[torch.arange(3), labels] - probabilities[torch.arange(3), labels]
            np.testing.assert_allclose(arrays["prob"][:, layer, v], expected_prob.numpy(), atol=2e-5)
            pruned_prob = probabilities[torch.arange(3), labels]  # P_ij[y]
            np.testing.assert_allclose(arrays["pruned_prob"][:, layer, v], pruned_prob.numpy(), atol=2e-5)
            middle = (unpruned + probabilities) / 2
            jsd = 0.5 * (unpruned * (unpruned / middle).log()).sum(-1) + 0.5 * (
                probabilities * (probabilities / middle).log()
            ).sum(-1)
            np.testing.assert_allclose(arrays["jsd"][:, layer, v], jsd.numpy(), atol=2e-6)
            cosine = F.cosine_similarity(unpruned_output, output, dim=-1)
            np.testing.assert_allclose(arrays["cls_distance"][:, layer, v], (1 - cosine[:, 0]).numpy(), atol=2e-6)
            np.testing.assert_allclose(
                arrays["patch_distance"][:, layer, v], (1 - cosine[:, 1:]).mean(-1).numpy(), atol=2e-6
            )
            top_prob, top_class = probabilities.topk(5, -1)
            np.testing.assert_array_equal(arrays["top_class"][:, layer, v], top_class.numpy())
    # Pruning the whole head changes something: the comparison above is not between zeros.
    assert np.abs(arrays["patch_distance"][:, :, arrays["mode"] == 1]).max() > 1e-3


@torch.no_grad()
def test_mode_zero_is_zero_and_a_head_without_output_changes_nothing():
    model = tiny_vit()
    layer, head, head_dim = 1, 2, DIM // HEADS
    model.blocks[layer].attn.proj.weight[:, head * head_dim : (head + 1) * head_dim] = 0.0
    images, labels = images_and_labels()
    arrays = head_importance_batch(model, images, labels, 256, "attention_output")
    metrics = ("prob", "jsd", "cls_distance", "patch_distance")
    unpruned = arrays["mode"] == 0
    for name in metrics:
        assert np.abs(arrays[name][:, :, unpruned]).max() < 1e-5, name
    silent = arrays["head"] == head
    other = (arrays["head"] == (head + 1) % HEADS) & (arrays["mode"] == 1)
    for name in metrics:
        assert np.abs(arrays[name][:, layer, silent]).max() < 1e-5, name
        assert np.abs(arrays[name][:, layer, other]).max() > 1e-4, name  # a head that does contribute


class TinyImages(torch.utils.data.Dataset):
    def __init__(self, n):
        self.images, _ = images_and_labels(3)
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        return self.images[index % 3] + 0.01 * index, index % CLASSES, 100 + index


def test_importance_tables_have_one_row_per_image_layer_head_and_mode():
    model = tiny_vit()
    rows, images = head_importance(model, TinyImages(5), device=torch.device("cpu"), batch_images=2, **PRUNING)
    assert len(rows) == 5 * LAYERS * HEADS * 6
    assert rows.groupby(["image_id", "layer", "head", "mode"]).size().eq(1).all()
    assert sorted(images["image_id"]) == [100, 101, 102, 103, 104]
    # Mode 0 is one unpruned forward, repeated for every head of the layer.
    mode0 = rows[rows["mode"] == 0]
    assert (
        mode0.groupby(["image_id", "layer"])["top5_prob"].apply(lambda s: np.ptp(np.stack(s), axis=0).max()).max() == 0
    )
    np.testing.assert_allclose(
        np.stack(mode0["top5_prob"]).max(1), images["top5_prob"].str[0].repeat(LAYERS * HEADS).to_numpy(), atol=1e-6
    )


@pytest.mark.parametrize("global_pool", ["avg", "map"])  # average pooling; SigLIP's attention pool
def test_without_prefix_tokens_the_cls_measures_are_skipped(caplog, global_pool):
    """The unpruned pass is the model's own prediction, through either head that pools without a CLS token."""
    model = tiny_vit(class_token=False, global_pool=global_pool).eval()
    with caplog.at_level("WARNING"):
        rows, images = head_importance(model, TinyImages(2), device=torch.device("cpu"), batch_images=2, **PRUNING)
    with torch.no_grad():
        probabilities = model(torch.stack([TinyImages(2)[i][0] for i in range(2)])).softmax(-1)
    np.testing.assert_allclose(
        np.stack(images["top5_prob"]), probabilities.topk(5).values.numpy(), rtol=1e-5, atol=1e-6
    )
    assert set(rows["mode"]) == {0, 1, 4}
    assert rows["cls_distance"].isna().all() and rows["patch_distance"].notna().all()
    assert rows.query("mode == 1")["patch_distance"].max() > 1e-4
    assert "no prefix (CLS) token" in caplog.text


@torch.no_grad()
def test_the_two_activations_differ_and_bad_names_are_refused():
    """z of eq. 2 and the block output are different readings (the block adds the residual and the MLP)."""
    model = tiny_vit()
    images, labels = images_and_labels()
    on_z = head_importance_batch(model, images, labels, 256, "attention_output")
    on_block = head_importance_batch(model, images, labels, 256, "block_output")
    whole = on_z["mode"] == 1
    assert np.abs(on_z["patch_distance"][:, :, whole] - on_block["patch_distance"][:, :, whole]).max() > 1e-3
    np.testing.assert_array_equal(on_z["prob"], on_block["prob"])  # the same pruned forward
    with pytest.raises(ValueError, match="heads.activation"):
        head_importance_batch(model, images, labels, 256, "residual")
