"""Run the baseline over a split and keep its attention: as a Zarr store, or streamed into U.

Both paths share one loop (:func:`fill_store`): forward passes of
``batch_size`` images in manifest order, each batch's outputs assembled into
whole chunks of a resumable :class:`patchinteract.stores.chunked.ChunkedStore`. The
streaming path rounds attention to float16 exactly like the store, then computes U
and dip_score with the same equations on the model's device (equal to the store
path's within float32 round-off).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from patchinteract.attention.capture import record_attention
from patchinteract.interaction.maps import interaction_map_on_device
from patchinteract.models.vit import n_prefix_tokens, patch_grid
from patchinteract.stores.chunked import ChunkedStore, images_per_chunk
from patchinteract.stores.specs import (
    attention_shape,
    attention_specs,
    interaction_chunk,
    interaction_specs,
    rounding_attributes,
)

log = logging.getLogger(__name__)


def store_attributes(vit, **extra) -> dict:
    """Attributes every store carries: the model's prefix count and patch grid, plus ``extra``."""
    return {"n_prefix_tokens": n_prefix_tokens(vit), "grid": list(patch_grid(vit)), **extra}


@torch.no_grad()
def attention_batches(
    model, dataset, indices: list[int], device: torch.device, batch_size: int, workers: int
) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Forward passes over ``indices`` of ``dataset``: (float16 attention (B, L, H, T, T) on ``device``,
    per-image arrays)."""
    batches = [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, num_workers=workers)
    model.to(device).eval()
    with record_attention(model, dtype=torch.float16) as recorder:
        for images, labels, image_ids in loader:
            logits = model(images.to(device, non_blocking=True))
            per_image = {
                "label": labels.numpy(),
                "prediction": logits.argmax(-1).cpu().numpy(),
                "image_id": image_ids.numpy(),
            }
            yield recorder.attention, per_image


# At most this much written output waits for the writer (beyond two chunks).
WRITE_QUEUE_BYTES = 2**30


def joined(pieces: list[np.ndarray]) -> np.ndarray:
    """A chunk's pieces as one array; a chunk within one batch stays a view of it (no copy)."""
    return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)


def fill_store(
    model,
    dataset,
    store: ChunkedStore,
    outputs: Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]],
    *,
    device: torch.device,
    batch_size: int,
    workers: int,
) -> None:
    """Run the model over the store's pending chunks and write ``outputs(attention, images)`` per chunk
    (``attention``: the batch's float16 tensor on ``device``; ``images``: the store indices of the batch;
    ``outputs`` returns NumPy arrays).

    Forward batches hold ``batch_size`` images whatever the chunk length; each
    batch's outputs are cut at chunk boundaries and a chunk is written as soon
    as all its images are in.
    """
    pending = store.rank_chunks()  # under several ranks, this rank's share
    indices = [i for c in pending for i in range(*store.image_range(c))]
    progress = tqdm(total=len(indices), desc="images", mininterval=5)
    start, seen = time.perf_counter(), 0
    chunks = iter(pending)
    chunk = next(chunks, None)
    pieces: list[dict[str, np.ndarray]] = []
    filled = 0
    # One batch's chunks (and one more) queue while the next batch is computed: with ViT-B/16's one-image
    # chunks, a queue of two made the forward wait for nearly every write (docs/scaling.md).
    in_flight = max(2, min(-(-batch_size // store.chunk) + 1, WRITE_QUEUE_BYTES // store.chunk_bytes))
    try:
        for attention, per_image in attention_batches(model, dataset, indices, device, batch_size, workers):
            batch = outputs(attention, np.asarray(indices[seen : seen + len(attention)])) | per_image
            offset, size = 0, len(attention)
            while offset < size:
                chunk_start, chunk_stop = store.image_range(chunk)
                take = min(chunk_stop - chunk_start - filled, size - offset)
                pieces.append({k: v[offset : offset + take] for k, v in batch.items()})
                filled, offset = filled + take, offset + take
                if filled == chunk_stop - chunk_start:
                    data = {k: joined([p[k] for p in pieces]) for k in batch}
                    store.write_chunk(chunk, data, in_flight=in_flight)
                    chunk, pieces, filled = next(chunks, None), [], 0
            seen += size
            progress.update(size)
            progress.set_postfix(img_per_s=f"{seen / (time.perf_counter() - start):.1f}", refresh=False)
    finally:
        store.flush()  # on an error too: the chunks already written stay for a resume
    progress.close()
    if seen:
        seconds = time.perf_counter() - start
        log.info("%d images in %.1f s (%.1f images/s)", seen, seconds, seen / seconds)


def write_attention_store(
    model,
    dataset,
    path,
    *,
    device,
    batch_size,
    workers,
    chunk_setting,
    compression_level,
    attributes,
    mantissa_bits=None,
):
    """Attention store of ``dataset`` (see docs/design.md): ``attn`` float16 (image, layer, head, query, key),
    lossless, or rounded to ``mantissa_bits`` (attention.mantissa_bits)."""
    specs = attention_specs(model, mantissa_bits)
    chunk = images_per_chunk(chunk_setting, specs["attn"].bytes_per_image)
    attributes = store_attributes(model, **attributes, **rounding_attributes(mantissa_bits))
    store = ChunkedStore(path, len(dataset), chunk, specs, attributes, compression_level)
    fill_store(
        model,
        dataset,
        store,
        lambda attention, _images: {"attn": attention.cpu().numpy()},
        device=device,
        batch_size=batch_size,
        workers=workers,
    )
    return store.finalize()


def write_interaction_store_streaming(
    model, dataset, path, *, device, batch_size, workers, compression_level, attributes
):
    """U and dip_score computed during inference, without keeping the attention (``attention.store: none``)."""
    prefix = n_prefix_tokens(model)
    n = attention_shape(model)[-1] - prefix
    store = ChunkedStore(
        path,
        len(dataset),
        interaction_chunk(n),
        interaction_specs(n),
        store_attributes(model, **attributes),
        compression_level,
    )

    def interaction_outputs(attention, images):
        interaction, score = interaction_map_on_device(attention, prefix, first_image=int(images[0]))
        return {"U": interaction.cpu().numpy(), "dip_score": score.cpu().numpy()}

    fill_store(model, dataset, store, interaction_outputs, device=device, batch_size=batch_size, workers=workers)
    return store.finalize()
