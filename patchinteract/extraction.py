"""Run the baseline over a split and keep its attention: as a Zarr store, or streamed into U.

Both paths share one inference loop (:func:`attention_batches`) and one
resumable writer (:class:`patchinteract.stores.ResumableStore`). The streaming
path rounds attention to float16 exactly like the store, then applies the same
kernel, so its U and dip_score equal the store path's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from patchinteract.interaction import dip_score, interaction_map
from patchinteract.models import n_prefix_tokens, patch_grid, record_attention
from patchinteract.stores import ArraySpec, ResumableStore, images_per_chunk

log = logging.getLogger(__name__)

ATTENTION_DIMENSIONS = ("image", "layer", "head", "query", "key")
STORED_DTYPE = np.float16


def store_attributes(vit, **extra) -> dict:
    """Attributes every store carries: the model's prefix count and patch grid, plus ``extra``."""
    return {"n_prefix_tokens": n_prefix_tokens(vit), "grid": list(patch_grid(vit)), **extra}


def attention_shape(model) -> tuple[int, int, int, int]:
    """(layer, head, T, T) of one image's attention, prefix tokens included."""
    rows, cols = patch_grid(model)
    tokens = n_prefix_tokens(model) + rows * cols
    return len(model.blocks), model.blocks[0].attn.num_heads, tokens, tokens


# Stored beside the main arrays of every store, one value per image.
PER_IMAGE_SPECS = {
    "label": ArraySpec((), "int64", ("image",)),
    "prediction": ArraySpec((), "int64", ("image",)),
    "image_id": ArraySpec((), "int64", ("image",)),
}


@torch.no_grad()
def attention_batches(
    model, dataset, store: ResumableStore, device: torch.device, batch_size: int, workers: int
) -> Iterator[tuple[list[int], np.ndarray, dict[str, np.ndarray]]]:
    """For each batch of pending chunks: (chunk ids, float16 attention (B, L, H, T, T), per-image arrays)."""
    pending = store.pending_chunks()
    chunks_per_batch = max(1, batch_size // store.chunk)
    chunk_groups = [pending[i : i + chunks_per_batch] for i in range(0, len(pending), chunks_per_batch)]
    # Batches are whole chunks, so a killed run loses at most the chunks in flight.
    batch_indices = [[i for c in group for i in range(*store.image_range(c))] for group in chunk_groups]
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=batch_indices, num_workers=workers)
    model.to(device).eval()
    progress = tqdm(total=store.n_images, desc="attention", unit="img", mininterval=5)
    progress.update(store.n_images - sum(len(b) for b in batch_indices))
    start, seen = time.perf_counter(), 0
    with record_attention(model) as captured:
        for chunk_ids, indices, (images, labels, image_ids) in zip(chunk_groups, batch_indices, loader, strict=True):
            captured.clear()
            logits = model(images.to(device, non_blocking=True))
            attention = torch.stack([a.to(torch.float16) for a in captured], dim=1).cpu().numpy()
            per_image = {
                "label": labels.numpy(),
                "prediction": logits.argmax(-1).cpu().numpy(),
                "image_id": image_ids.numpy(),
            }
            yield chunk_ids, attention, per_image
            seen += len(indices)
            progress.update(len(indices))
            progress.set_postfix(img_per_s=f"{seen / (time.perf_counter() - start):.1f}", refresh=False)
    progress.close()
    if seen:
        log.info(
            "%d images in %.1f s (%.1f images/s)",
            seen,
            time.perf_counter() - start,
            seen / (time.perf_counter() - start),
        )


def split_by_chunk(store: ResumableStore, chunk_ids: list[int], arrays: dict[str, np.ndarray]):
    """Cut batch arrays back into per-chunk pieces."""
    offset = 0
    for chunk_index in chunk_ids:
        start, stop = store.image_range(chunk_index)
        yield chunk_index, {k: v[offset : offset + stop - start] for k, v in arrays.items()}
        offset += stop - start


def write_attention_store(
    model, dataset, path, *, device, batch_size, workers, chunk_setting, compression_level, attributes
):
    """Attention store of ``dataset`` (see DESIGN.md): ``attn`` float16 (image, layer, head, query, key)."""
    shape = attention_shape(model)
    chunk = images_per_chunk(chunk_setting, int(np.prod(shape)) * 2)
    specs = {"attn": ArraySpec(shape, "float16", ATTENTION_DIMENSIONS), **PER_IMAGE_SPECS}
    store = ResumableStore(path, len(dataset), chunk, specs, store_attributes(model, **attributes), compression_level)
    for chunk_ids, attention, per_image in attention_batches(model, dataset, store, device, batch_size, workers):
        for chunk_index, data in split_by_chunk(store, chunk_ids, {"attn": attention, **per_image}):
            store.write_chunk(chunk_index, data)
    return store.finalize()


def interaction_specs(n_patches: int) -> dict[str, ArraySpec]:
    """Arrays of an interaction store: U over patch tokens, dip_score, and the per-image arrays."""
    n = n_patches
    return {
        "U": ArraySpec((n, n), "float32", ("image", "query", "key")),
        "dip_score": ArraySpec((n,), "float32", ("image", "patch")),
        **PER_IMAGE_SPECS,
    }


def write_interaction_store_streaming(
    model, dataset, path, *, device, batch_size, workers, chunk_setting, compression_level, attributes
):
    """U and dip_score computed during inference, without keeping the attention (``attention.store: none``)."""
    shape = attention_shape(model)
    chunk = images_per_chunk(chunk_setting, int(np.prod(shape)) * 2)
    prefix = n_prefix_tokens(model)
    store = ResumableStore(
        path,
        len(dataset),
        chunk,
        interaction_specs(shape[-1] - prefix),
        store_attributes(model, **attributes),
        compression_level,
    )
    for chunk_ids, attention, per_image in attention_batches(model, dataset, store, device, batch_size, workers):
        first_image = store.image_range(chunk_ids[0])[0]
        interaction = interaction_map(attention, prefix, first_image=first_image)
        batch = {"U": interaction, "dip_score": dip_score(interaction), **per_image}
        for chunk_index, data in split_by_chunk(store, chunk_ids, batch):
            store.write_chunk(chunk_index, data)
    return store.finalize()
