"""The semantics store: θ_KK, θ_NK and the focus index of every image, layer and head, and θ_i averaged
over heads (Wu et al., eq. 2-5), computed with Dask over the attention store (like U), or streamed
during inference when the attention is not kept (``attention.store: none``); and its tables.

Arrays (stores/specs.py, docs/design.md): ``theta_kk``, ``theta_nk``, ``focus_index`` (image, layer,
head), ``theta_patch`` (image, layer, patch); plus label, prediction and image_id, in manifest order.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import zarr

from patchinteract.analyses.semantics.interrelation import semantic_reductions
from patchinteract.stores.chunked import ChunkedStore, auto_chunk
from patchinteract.stores.specs import PER_IMAGE_SPECS, semantics_specs

log = logging.getLogger(__name__)

HEAD_ARRAYS = ("theta_kk", "theta_nk", "focus_index")


def read_keypoints(keypoint_path: Path | str, image_ids: np.ndarray, what: str) -> zarr.Array:
    """The keypoint counts of a keypoint store, checked to be of the images ``image_ids`` (of ``what``)."""
    keypoints = zarr.open_group(keypoint_path, mode="r")
    if not np.array_equal(keypoints["image_id"][:], image_ids):
        raise ValueError(
            f"keypoint store {keypoint_path} holds other images than {what} "
            f"({keypoints['image_id'].shape[0]} vs {len(image_ids)} images, or another order): rebuild it"
        )
    return keypoints["keypoints"]


def packed_reductions(attn: np.ndarray, counts: np.ndarray, n_prefix: int, gamma: float, weighting: str):
    """:func:`semantic_reductions` of one block as one (image, layer, 3·heads + N) array, so that Dask
    computes θ once for all four arrays."""
    arrays = semantic_reductions(attn, n_prefix, counts, gamma, weighting)
    return np.concatenate([arrays[name] for name in (*HEAD_ARRAYS, "theta_patch")], axis=-1)


def compute_semantics_store(
    attention_path: Path | str,
    keypoint_path: Path | str,
    out_path: Path | str,
    *,
    gamma: float,
    weighting: str,
    dask_settings: dict,
    compression_level: int = 1,
) -> Path:
    """The semantics store of every image of an attention store, with Dask (``dask_settings``: mode,
    workers, address, slurm as for the interaction store)."""
    # Dask is imported where its graphs are built: the streaming jobs never load it (job start).
    import dask
    import dask.array as da

    from patchinteract.stores.compute import store_with_dask

    source = zarr.open_group(attention_path, mode="r")
    counts = read_keypoints(keypoint_path, source["image_id"][:], f"attention store {attention_path}")
    attn = da.from_zarr(source["attn"])
    n_images, n_layers, n_heads = attn.shape[:3]
    prefix, n = int(source.attrs["n_prefix_tokens"]), counts.shape[1]
    specs = semantics_specs(n_layers, n_heads, n)
    attributes = semantics_attributes(source.attrs, gamma, weighting)
    store = ChunkedStore(
        out_path, n_images, auto_chunk(specs, n_images), specs, attributes, compression_level, resumable=False
    )
    for name in PER_IMAGE_SPECS:
        store.array(name)[:] = source[name][:]
    attn = attn.rechunk({1: -1, 2: -1, 3: -1, 4: -1})
    counts = da.from_zarr(counts).rechunk({0: attn.chunks[0], 1: -1})
    blocks = zip(attn.chunks[0], attn.to_delayed().ravel(), counts.to_delayed().ravel(), strict=True)
    packed = da.concatenate(
        [
            da.from_delayed(
                dask.delayed(packed_reductions)(a, c, prefix, gamma, weighting),
                shape=(size, n_layers, 3 * n_heads + n),
                dtype=np.float32,
            )
            for size, a, c in blocks
        ]
    )
    columns = {name: slice(i * n_heads, (i + 1) * n_heads) for i, name in enumerate(HEAD_ARRAYS)}
    columns["theta_patch"] = slice(3 * n_heads, None)
    sources = [packed[..., part].rechunk({0: store.array(name).chunks[0]}) for name, part in columns.items()]
    log.info("semantics store of %d images, γ = %g, %s", n_images, gamma, weighting)
    store_with_dask(sources, [store.array(name) for name in columns], **dask_settings)
    return store.finalize()


def semantics_attributes(attributes, gamma: float, weighting: str) -> dict:
    return dict(attributes) | {"gamma": gamma, "weighting": weighting}


def write_semantics_store_streaming(
    model,
    dataset,
    keypoint_path: Path | str,
    path: Path | str,
    *,
    gamma: float,
    weighting: str,
    device,
    batch_size: int,
    workers: int,
    compression_level: int,
    attributes: dict,
) -> Path:
    """The semantics store computed during inference over ``dataset`` (a whole split), without keeping
    the attention (``attention.store: none``)."""
    from patchinteract.attention.extraction import fill_store, store_attributes
    from patchinteract.stores.specs import attention_shape

    counts = read_keypoints(keypoint_path, dataset.image_ids, "the split")[:]
    n_layers, n_heads, _, _ = attention_shape(model)
    specs = semantics_specs(n_layers, n_heads, counts.shape[1])
    attributes = semantics_attributes(store_attributes(model, **attributes), gamma, weighting)
    store = ChunkedStore(path, len(dataset), auto_chunk(specs, len(dataset)), specs, attributes, compression_level)
    prefix = int(attributes["n_prefix_tokens"])

    def reductions(attention, images):  # on the CPU: θ and the focus index are NumPy (docs/scaling.md)
        return semantic_reductions(attention.cpu().numpy(), prefix, counts[images], gamma, weighting)

    fill_store(model, dataset, store, reductions, device=device, batch_size=batch_size, workers=workers)
    return store.finalize()


def theta_table(store_path: Path | str) -> pd.DataFrame:
    """One row per image, layer and head: image_id, layer, head, θ_KK, θ_NK, θ_KN, θ_NN, focus_index."""
    store = zarr.open_group(store_path, mode="r")
    theta_kk, theta_nk = store["theta_kk"][:], store["theta_nk"][:]
    n_images, n_layers, n_heads = theta_kk.shape
    table = pd.MultiIndex.from_product(
        [store["image_id"][:], range(n_layers), range(n_heads)], names=["image_id", "layer", "head"]
    ).to_frame(index=False)
    return table.assign(
        theta_kk=theta_kk.reshape(-1),
        theta_nk=theta_nk.reshape(-1),
        theta_kn=1 - theta_kk.reshape(-1),
        theta_nn=1 - theta_nk.reshape(-1),
        focus_index=store["focus_index"][:].reshape(-1),
    )


def semantics_summary(theta: pd.DataFrame) -> pd.DataFrame:
    """Per layer and head, the mean over images of θ_KK, θ_NK, θ_KN, θ_NN and the focus index (eq. 4-5),
    with the number of images each θ mean is over: an image without keypoint (non-keypoint) patches has
    no θ_KK (θ_NK) and is left out of that mean (``images_without_kk`` / ``images_without_nk``)."""
    grouped = theta.groupby(["layer", "head"])
    measures = ["theta_kk", "theta_nk", "theta_kn", "theta_nn", "focus_index"]
    summary = grouped[measures].mean()  # pandas skips NaN
    summary["images"] = grouped.size()
    summary["images_kk"] = grouped["theta_kk"].count()
    summary["images_nk"] = grouped["theta_nk"].count()
    summary["images_without_kk"] = summary["images"] - summary["images_kk"]
    summary["images_without_nk"] = summary["images"] - summary["images_nk"]
    return summary.reset_index()
