"""Head importance by pruning (Li et al., TVCG 2023, Sec. 5.2, eq. 3-6), batched.

Pruning head (i, j) multiplies its post-softmax attention by a 0/1 mask over
regions of the matrix (the six modes of :data:`PRUNING_MODES`), so the head adds
nothing from those regions to its layer's output. One image's pruned variants
of layer i all share the stem and blocks 0..i-1, which run once; block i runs on
a batch of copies of their output, each copy with its own attention mask (a
forward pre-hook on the block's ``attn_drop``, whose input is the softmax output),
and the blocks after it run on the whole batch of variants. Everything else is
timm's own forward, so any timm ViT (registers, layer scale, QK-norm) works.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from patchinteract.analyses.heads.head_tables import IMPORTANCE_COLUMNS
from patchinteract.attention.capture import attention_modules
from patchinteract.models.families import stem
from patchinteract.models.vit import logits_from_tokens, n_prefix_tokens
from patchinteract.ranks import gathered, rank_block

log = logging.getLogger(__name__)

# Mode -> regions set to zero: cc = prefix->prefix (CLS->CLS), cp = prefix<->patches (the prefix rows'
# patch part and the patch rows' prefix part), pp = patches->patches (docs/analyses.md).
PRUNING_MODES = {0: (), 1: ("cc", "cp", "pp"), 2: ("cc",), 3: ("cp",), 4: ("pp",), 5: ("cc", "cp")}
# Without prefix tokens only these modes are defined (the others prune CLS regions).
MODES_WITHOUT_PREFIX = (0, 1, 4)
# Where I_CLS and I_patch compare the unpruned and pruned activations of the pruned head's layer:
# z of eq. 2, the attention output after W_O and its bias, before the residual (the paper's), or
# the block's output (the residual stream handed to the next block).
ACTIVATIONS = ("attention_output", "block_output")
TOP_CLASSES = 5


def region_masks(n_tokens: int, n_prefix: int) -> dict[str, torch.Tensor]:
    """Boolean (T, T) masks of the regions cc, cp and pp of an attention matrix (rows = queries)."""
    is_prefix = torch.arange(n_tokens) < n_prefix
    prefix_query, prefix_key = is_prefix[:, None], is_prefix[None, :]
    return {"cc": prefix_query & prefix_key, "cp": prefix_query ^ prefix_key, "pp": ~prefix_query & ~prefix_key}


def pruning_modes(n_prefix: int) -> tuple[int, ...]:
    """The modes defined for a model: all six, or without prefix tokens 0, 1 and 4."""
    return tuple(PRUNING_MODES) if n_prefix else MODES_WITHOUT_PREFIX


@dataclass(frozen=True)
class Variants:
    """The pruned variants of one layer: mode 0 once, then every (head, mode > 0).

    ``masks`` is (variant, head, T, T) float, 1 where attention is kept; ``head`` and
    ``mode`` name each variant (head -1 for the unpruned mode 0).
    """

    masks: torch.Tensor
    head: np.ndarray
    mode: np.ndarray


def layer_variants(n_heads: int, n_tokens: int, n_prefix: int) -> Variants:
    """Attention masks of mode 0 and of every head in every other mode of :func:`pruning_modes`."""
    regions = region_masks(n_tokens, n_prefix)
    modes = [m for m in pruning_modes(n_prefix) if m]
    masks, heads, mode_of = [torch.ones(n_heads, n_tokens, n_tokens)], [-1], [0]
    for head in range(n_heads):
        for mode in modes:
            pruned = torch.zeros(n_tokens, n_tokens, dtype=torch.bool)
            for region in PRUNING_MODES[mode]:
                pruned |= regions[region]
            mask = torch.ones(n_heads, n_tokens, n_tokens)
            mask[head, pruned] = 0.0
            masks.append(mask)
            heads.append(head)
            mode_of.append(mode)
    return Variants(torch.stack(masks), np.array(heads), np.array(mode_of))


@contextlib.contextmanager
def attention_multiplied(attention_module, masks: torch.Tensor):
    """Inside the context, ``attention_module`` multiplies its post-softmax attention by ``masks``
    (batch, head, T, T), broadcast over the batch when it has fewer rows."""
    previous = attention_module.fused_attn
    attention_module.fused_attn = False  # the fused kernel never exposes the attention
    handle = attention_module.attn_drop.register_forward_pre_hook(lambda _m, inputs: (inputs[0] * masks,))
    try:
        yield
    finally:
        handle.remove()
        attention_module.fused_attn = previous


@contextlib.contextmanager
def recorded_outputs(module):
    """Inside the context, every output of ``module``'s forward is appended to the yielded list."""
    outputs = []
    handle = module.register_forward_hook(lambda _m, _inputs, output: outputs.append(output))
    try:
        yield outputs
    finally:
        handle.remove()


# ----------------------------------------------------------------------------- the four metrics


def pruned_true_probability(pruned: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """P_ij[y] (eq. 3): the true class's probability with the head pruned. Shapes (B, V, C), (B,) -> (B, V)."""
    return pruned.gather(2, labels[:, None, None].expand(-1, pruned.shape[1], 1))[..., 0]


def probability_drop(reference: torch.Tensor, pruned: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """I_prob (eq. 3): P[y] - P_ij[y]; positive when the head helps the true class. Shapes (B, C), (B, V, C), (B,)."""
    return reference.gather(1, labels[:, None]) - pruned_true_probability(pruned, labels)


def jensen_shannon(reference: torch.Tensor, pruned: torch.Tensor) -> torch.Tensor:
    """I_JSD (eq. 4): JSD(P || P_ij) with the natural logarithm (at most ln 2). Shapes (B, C), (B, V, C)."""
    p = reference[:, None, :].expand_as(pruned)
    middle = (p + pruned) / 2

    def kl(a):  # 0 log 0 = 0
        return torch.where(a > 0, a * (torch.log(a.clamp_min(1e-30)) - torch.log(middle.clamp_min(1e-30))), 0.0)

    return 0.5 * kl(p).sum(-1) + 0.5 * kl(pruned).sum(-1)


def cosine_distance(reference: torch.Tensor, pruned: torch.Tensor) -> torch.Tensor:
    """1 - cos over the last axis (eq. 5-6); ``reference`` broadcasts against ``pruned``."""
    return 1.0 - F.cosine_similarity(reference, pruned, dim=-1, eps=1e-12)


def cls_distance(reference_tokens: torch.Tensor, pruned_tokens: torch.Tensor) -> torch.Tensor:
    """I_CLS (eq. 5): cosine distance of the CLS rows of layer i's activation (z of eq. 2, or block i's
    output). (B, T, D), (B, V, T, D) -> (B, V)."""
    return cosine_distance(reference_tokens[:, None, 0], pruned_tokens[:, :, 0])


def patch_distance(reference_tokens: torch.Tensor, pruned_tokens: torch.Tensor, n_prefix: int) -> torch.Tensor:
    """I_patch (eq. 6): mean over the patch rows of layer i's activation of the cosine distance."""
    return cosine_distance(reference_tokens[:, None, n_prefix:], pruned_tokens[:, :, n_prefix:]).mean(-1)


# ----------------------------------------------------------------------------- the batched computation


def variant_metrics(
    reference, pruned_probabilities, labels, unpruned_output, pruned_outputs, n_prefix: int, top: int
) -> dict:
    """Eq. 3-6 and the top classes of every variant of one layer, per image: (B, V) tensors, (B, V, top)."""
    top_prob, top_class = pruned_probabilities.topk(top, dim=-1)
    no_prefix = torch.full(pruned_probabilities.shape[:2], float("nan"), device=pruned_probabilities.device)
    return {
        "prob": probability_drop(reference, pruned_probabilities, labels),
        "pruned_prob": pruned_true_probability(pruned_probabilities, labels),
        "jsd": jensen_shannon(reference, pruned_probabilities),
        "cls_distance": cls_distance(unpruned_output, pruned_outputs) if n_prefix else no_prefix,
        "patch_distance": patch_distance(unpruned_output, pruned_outputs, n_prefix),
        "top_class": top_class,
        "top_prob": top_prob,
    }


@torch.no_grad()
def head_importance_batch(
    model,
    images: torch.Tensor,
    labels: torch.Tensor,
    variants_per_pass: int,
    activation: str,
) -> dict:
    """Every variant of every layer for a batch of images.

    Returns numpy arrays: ``probabilities`` (B, C) of the unpruned model, and per
    layer, variant and image ``prob``, ``pruned_prob``, ``jsd``, ``cls_distance`` (NaN
    without a prefix token), ``patch_distance`` (both on ``activation``, one of
    :data:`ACTIVATIONS`), ``top_class`` / ``top_prob`` (B, L, V, 5); ``head`` and
    ``mode`` (V,) name the variants (shared by all layers).
    Variants of a layer pass through the model ``variants_per_pass`` image-copies at a time.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"heads.activation: '{activation}' is not one of {ACTIVATIONS}")
    model.eval()
    blocks, prefix = list(model.blocks), n_prefix_tokens(model)
    modules = attention_modules(model)
    attention_output = activation == "attention_output"
    tokens, block_arguments = stem(model, images)
    inputs, outputs = [], []  # the input of every block and layer i's activation, unpruned
    for block, module, arguments in zip(blocks, modules, block_arguments, strict=True):
        inputs.append(tokens)
        with recorded_outputs(module) as z:
            tokens = block(tokens, **arguments)
        outputs.append(z[0] if attention_output else tokens)
    reference = logits_from_tokens(model, tokens).softmax(-1)
    n_images, n_tokens, n_classes = images.shape[0], tokens.shape[1], reference.shape[-1]
    variants = layer_variants(modules[0].num_heads, n_tokens, prefix)
    masks = variants.masks.to(images.device)
    n_variants, top = len(masks), min(TOP_CLASSES, n_classes)
    per_pass = max(1, variants_per_pass // n_images)
    results = {name: [] for name in (*IMPORTANCE_COLUMNS, "top_class", "top_prob")}
    for layer, (block, module) in enumerate(zip(blocks, modules, strict=True)):
        probabilities, block_outputs = [], []
        for first in range(0, n_variants, per_pass):
            chunk = masks[first : first + per_pass]
            copies = inputs[layer][:, None].expand(-1, len(chunk), -1, -1).flatten(0, 1)
            with attention_multiplied(module, chunk.repeat(n_images, 1, 1, 1)), recorded_outputs(module) as z:
                pruned = block(copies, **block_arguments[layer])
            block_outputs.append((z[0] if attention_output else pruned).unflatten(0, (n_images, len(chunk))))
            for later, arguments in zip(blocks[layer + 1 :], block_arguments[layer + 1 :], strict=True):
                pruned = later(pruned, **arguments)
            probabilities.append(logits_from_tokens(model, pruned).softmax(-1).unflatten(0, (n_images, len(chunk))))
        layer_results = variant_metrics(
            reference, torch.cat(probabilities, 1), labels, outputs[layer], torch.cat(block_outputs, 1), prefix, top
        )
        for name, values in layer_results.items():
            results[name].append(values.cpu().numpy())
    arrays = {name: np.stack(values, axis=1) for name, values in results.items()}  # (B, L, V, ...)
    return arrays | {"probabilities": reference.cpu().numpy(), "head": variants.head, "mode": variants.mode}


def variant_index(heads: np.ndarray, modes: np.ndarray, n_heads: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each (head, mode) row of the table: its variant (mode 0, shared by the layer's heads, repeated)."""
    defined = sorted(set(modes.tolist()))
    rows = [(h, m) for h in range(n_heads) for m in defined]
    lookup = {(int(h), int(m)): v for v, (h, m) in enumerate(zip(heads, modes, strict=True))}
    index = np.array([lookup[(-1, 0)] if m == 0 else lookup[(h, m)] for h, m in rows])
    return index, np.array([h for h, _ in rows]), np.array([m for _, m in rows])


def importance_rows(arrays: dict, image_ids: np.ndarray, n_heads: int) -> pd.DataFrame:
    """The long table of :func:`head_importance_batch`'s arrays: one row per image, layer, head and mode."""
    index, heads, modes = variant_index(arrays["head"], arrays["mode"], n_heads)
    n_images, n_layers = arrays["prob"].shape[:2]
    per_row = (n_images, n_layers, len(index))
    table = pd.DataFrame(
        {
            "image_id": np.repeat(image_ids, n_layers * len(index)),
            "layer": np.tile(np.repeat(np.arange(n_layers), len(index)), n_images),
            "head": np.tile(heads, n_images * n_layers),
            "mode": np.tile(modes, n_images * n_layers),
        }
    )
    for name in IMPORTANCE_COLUMNS:
        table[name] = arrays[name][:, :, index].reshape(-1).astype(np.float32)
    for name, column in (("top_class", "top5_class"), ("top_prob", "top5_prob")):
        values = arrays[name][:, :, index].reshape(int(np.prod(per_row)), -1)
        table[column] = list(values.astype(np.int64 if name == "top_class" else np.float32))
    return table


def image_rows(probabilities: np.ndarray, labels: np.ndarray, image_ids: np.ndarray) -> pd.DataFrame:
    """Per image: the unpruned prediction, the true class's probability and the top classes."""
    top = min(TOP_CLASSES, probabilities.shape[1])
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :top]
    return pd.DataFrame(
        {
            "image_id": image_ids,
            "label": labels,
            "prediction": order[:, 0],
            "true_prob": probabilities[np.arange(len(labels)), labels].astype(np.float32),
            "top5_class": list(order.astype(np.int64)),
            "top5_prob": list(np.take_along_axis(probabilities, order, 1).astype(np.float32)),
        }
    )


def head_importance(
    model,
    dataset,
    *,
    device: torch.device,
    batch_images: int,
    workers: int = 0,
    variants_per_pass: int,
    activation: str,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Head importance of every image of ``dataset`` (yielding image, label, image_id): (rows, images) tables.
    Under several ranks each prunes its block of the images; every rank gets the tables of all, in order."""
    model.to(device).eval()
    prefix = n_prefix_tokens(model)
    if not prefix:
        log.warning("the model has no prefix (CLS) token: modes 2, 3, 5 and cls_distance are skipped (NaN)")
    n_heads = attention_modules(model)[0].num_heads
    loader = torch.utils.data.DataLoader(rank_block(dataset), batch_size=batch_images, num_workers=workers)
    rows, images = [], []
    for batch, labels, image_ids in tqdm(loader, desc="head importance", unit="batch", mininterval=5):
        arrays = head_importance_batch(model, batch.to(device), labels.to(device), variants_per_pass, activation)
        rows.append(importance_rows(arrays, image_ids.numpy(), n_heads))
        images.append(image_rows(arrays["probabilities"], labels.numpy(), image_ids.numpy()))
    per_rank = gathered((rows, images))  # in rank order: the order of one process
    rows = [table for rank_rows, _ in per_rank for table in rank_rows]
    images = [table for _, rank_images in per_rank for table in rank_images]
    return pd.concat(rows, ignore_index=True), pd.concat(images, ignore_index=True)
