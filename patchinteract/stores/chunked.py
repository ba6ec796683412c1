"""Zarr v3 stores whose first axis is the image axis, built in ``<path>.partial`` and
published by an atomic rename.

Two ways to fill one:

- resumable (inference jobs): written one image chunk at a time; a bool array
  ``chunk_complete`` marks the chunks whose data are fully written (set only
  after them), so a restarted job skips those and rewrites the rest. Snakemake
  deletes a failed job's declared outputs, but not ``.partial``, so work
  survives a kill or a preemption.
- in one go (the Dask stage): the caller writes every array, aligned with its
  final chunks; a rerun starts over.

Either way the published store has the same final layout: the main arrays
(attn, U) keep the configured image chunks; side arrays (labels, ids,
dip_score: under 1/64 of the main array's bytes per image) are chunked into
about TARGET_CHUNK_BYTES (a whole number of image chunks), so they are one or
a few files rather than one tiny file per image; no bookkeeping array is left.
"""

from __future__ import annotations

import logging
import os
import shutil
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BitRound, BloscCodec

from patchinteract.ranks import Ranks, barrier, from_main, rank_range

log = logging.getLogger(__name__)


COMPLETE_ARRAY = "chunk_complete"


# Chunk size that "auto" aims at: large enough for fast I/O, small enough for memory.
TARGET_CHUNK_BYTES = 16 * 2**20


@dataclass(frozen=True)
class ArraySpec:
    """One array of a store whose first axis is the image axis."""

    shape_per_image: tuple[int, ...]
    dtype: str
    dimension_names: tuple[str, ...]
    mantissa_bits: int | None = None  # None: lossless; else rounded to this many bits (rounding_filters)

    @property
    def bytes_per_image(self) -> int:
        return int(np.prod(self.shape_per_image, dtype=np.int64)) * np.dtype(self.dtype).itemsize


def store_folder(path: Path | str) -> Path:
    """The folder of a Zarr store, given the folder or its root metadata file ``zarr.json`` (what rules
    declare as a store's input or output, so that Snakemake writes no timestamp file into the store)."""
    path = Path(path)
    return path.parent if path.name == "zarr.json" else path


def folder_bytes(path: Path | str) -> int:
    """Bytes on disk of every file under ``path`` (a store, or any folder of outputs)."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def images_per_chunk(setting: int | str, bytes_per_image: int) -> int:
    """The configured chunk length, or for "auto" about TARGET_CHUNK_BYTES per chunk."""
    if setting == "auto":
        return max(1, TARGET_CHUNK_BYTES // max(1, bytes_per_image))
    return int(setting)


def auto_chunk(arrays: dict[str, ArraySpec], n_images: int) -> int:
    """Images per chunk of a store of ``arrays``: about TARGET_CHUNK_BYTES of its largest array, at most
    ``n_images`` (and at least 1)."""
    return max(1, min(n_images, images_per_chunk("auto", max(spec.bytes_per_image for spec in arrays.values()))))


# A side array has at most this share of the main array's bytes per image.
SIDE_ARRAY_SHARE = 1 / 64


def final_image_chunks(arrays: dict[str, ArraySpec], chunk: int, n_images: int) -> dict[str, int]:
    """Images per chunk of each array in a published store (see the module docstring)."""
    main_bytes = max(spec.bytes_per_image for spec in arrays.values())
    chunks = {}
    for name, spec in arrays.items():
        if spec.bytes_per_image > SIDE_ARRAY_SHARE * main_bytes:
            chunks[name] = chunk
        else:
            whole_chunks = max(1, images_per_chunk("auto", spec.bytes_per_image) // chunk)
            chunks[name] = min(chunk * whole_chunks, max(1, n_images))
    return chunks


def compressor(level: int) -> BloscCodec:
    # Bit shuffle groups the (mostly constant) exponent bits of float16 attention: about
    # 0.75x raw for ViT-B/16, at twice the speed of byte shuffle for the same ratio.
    return BloscCodec(cname="zstd", clevel=level, shuffle="bitshuffle")


# Said on every open of a rounded store: zarr-python reads its BitRound filter (a no-op when decoding).
warnings.filterwarnings("ignore", message="Numcodecs codecs are not in the Zarr version 3 specification")

FLOAT16_MANTISSA_BITS = 10  # explicit bits


def rounding_error_bound(mantissa_bits: int) -> float:
    """Largest relative error of rounding float16 to ``mantissa_bits`` bits, round to nearest: half a unit
    in the last kept place. (Below float16's smallest normal value, 2^-14, the bound is absolute: this
    times 2^-14.)"""
    return 2.0 ** -(mantissa_bits + 1)


def rounding_filters(mantissa_bits: int | None) -> list:
    """Zarr filters that round float16 mantissas to ``mantissa_bits`` bits before compression (none: lossless).
    Fewer significant bits leave runs of zero bits that the bit shuffle and zstd then pack."""
    if mantissa_bits is None:
        return []
    if not 1 <= mantissa_bits < FLOAT16_MANTISSA_BITS:
        raise ValueError(f"mantissa bits must be 1-{FLOAT16_MANTISSA_BITS - 1} (or None: all), got {mantissa_bits}")
    return [BitRound(keepbits=mantissa_bits)]


class ChunkedStore:
    """A Zarr group of ``arrays``, each with ``n_images`` along axis 0, written by image chunks."""

    def __init__(
        self,
        path: Path | str,
        n_images: int,
        chunk: int,
        arrays: dict[str, ArraySpec],
        attributes: dict,
        compression_level: int = 1,
        resumable: bool = True,
    ):
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.n_images, self.chunk = n_images, chunk
        self.n_chunks = -(-n_images // chunk)
        self.arrays = arrays
        self.attributes = dict(attributes)
        self.compression_level = compression_level
        self.resumable = resumable
        self.final_chunks = final_image_chunks(arrays, chunk, n_images)
        # A resumable store is filled by all the job's ranks together (rank 0 creates or resumes it, then
        # the others open it); a store written in one go, by the one rank that calls write_arrays.
        self.ranks = Ranks.current() if resumable else Ranks()
        if self.ranks.main:
            self.group = self._open_or_create()
        self._wait_for_ranks()
        if not self.ranks.main:
            self.group = zarr.open_group(self.partial, mode="r+")
        # Opened once: looking an array up in the group re-reads its metadata from disk.
        self._handles = {name: self.group[name] for name in self.group.array_keys()}
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="zarr-writer")
        self._pending: list[Future] = []

    def _open_or_create(self) -> zarr.Group:
        if self.partial.exists() and self.resumable:
            group = zarr.open_group(self.partial, mode="r+")
            if dict(group.attrs) == self.attributes and {*self.arrays, COMPLETE_ARRAY} <= set(group.array_keys()):
                done = int(group[COMPLETE_ARRAY][:].sum())
                log.info("resuming %s: %d of %d chunks already written", self.partial, done, self.n_chunks)
                return group
            log.warning("discarding %s: written for other settings", self.partial)
        if self.partial.exists():
            shutil.rmtree(self.partial)
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        group = zarr.open_group(self.partial, mode="w", zarr_format=3)
        group.attrs.update(self.attributes)
        for name, spec in self.arrays.items():
            # Resumable stores write whole store chunks only; others get their final layout now.
            images = self.chunk if self.resumable else self.final_chunks[name]
            self._create_array(group, name, spec, images)
        if self.resumable:
            group.create_array(
                COMPLETE_ARRAY,
                shape=(self.n_chunks,),
                chunks=(1,),
                dtype="bool",
                fill_value=False,
                dimension_names=("chunk",),
            )
        return group

    def _create_array(self, group: zarr.Group, name: str, spec: ArraySpec, images_per_chunk: int):
        return group.create_array(
            name,
            shape=(self.n_images, *spec.shape_per_image),
            chunks=(images_per_chunk, *spec.shape_per_image),
            dtype=spec.dtype,
            filters=rounding_filters(spec.mantissa_bits),
            compressors=compressor(self.compression_level),
            dimension_names=spec.dimension_names,
            fill_value=0,
            overwrite=True,
        )

    @property
    def chunk_bytes(self) -> int:
        """Bytes of one image chunk of all arrays, uncompressed."""
        return self.chunk * sum(spec.bytes_per_image for spec in self.arrays.values())

    def array(self, name: str) -> zarr.Array:
        return self._handles[name]

    def pending_chunks(self) -> list[int]:
        if not self.resumable:
            return list(range(self.n_chunks))
        return [int(i) for i in np.flatnonzero(~self._handles[COMPLETE_ARRAY][:])]

    def rank_chunks(self) -> list[int]:
        """The pending chunks this rank writes: its consecutive block of rank 0's list (all of it with one
        rank). Chunks are disjoint Zarr chunks of every array, so the ranks write one store without a lock,
        and a resume, on any number of ranks, shares out only the chunks not yet complete."""
        pending = from_main(self.pending_chunks())
        return [pending[i] for i in rank_range(len(pending))]

    def image_range(self, chunk_index: int) -> tuple[int, int]:
        start = chunk_index * self.chunk
        return start, min(start + self.chunk, self.n_images)

    def _write(self, chunk_index: int, data: dict[str, np.ndarray]) -> None:
        start, stop = self.image_range(chunk_index)
        for name, values in data.items():
            self._handles[name][start:stop] = values
        self._handles[COMPLETE_ARRAY][chunk_index] = True  # only after the data

    def write_chunk(self, chunk_index: int, data: dict[str, np.ndarray], in_flight: int = 2) -> None:
        """Queue one chunk for writing in the background, waiting while ``in_flight`` chunks are queued.
        A caller that computes several chunks at once lets a whole batch of them queue (``data`` is kept
        until written), so that the writer works while the next batch is computed."""
        if not self.resumable:
            raise RuntimeError("write_chunk is for resumable stores; write the arrays directly")
        if set(data) != set(self.arrays):
            raise ValueError(f"chunk {chunk_index}: expected arrays {sorted(self.arrays)}, got {sorted(data)}")
        while len(self._pending) >= in_flight:
            self._pending.pop(0).result()
        self._pending.append(self._writer.submit(self._write, chunk_index, data))

    def flush(self) -> None:
        """Wait for the queued chunk writes: after an error, the chunks already computed stay for a resume."""
        while self._pending:
            self._pending.pop(0).result()

    def _consolidate(self) -> None:
        """Rewrite arrays whose final chunks span several store chunks; drop the bookkeeping."""
        for name, spec in self.arrays.items():
            images = self.final_chunks[name]
            if images != self.chunk:
                values = self._handles[name][:]
                self._create_array(self.group, name, spec, images)[:] = values
        del self.group[COMPLETE_ARRAY]

    def finalize(self) -> Path:
        """Wait for the writes, check every chunk is complete, fix the final layout, rename into place
        (under several ranks: rank 0, once every rank's writes are done)."""
        self.flush()
        self._writer.shutdown()
        self._wait_for_ranks()
        if not self.ranks.main:
            self._wait_for_ranks()
            return self.path
        path = self._publish()
        self._wait_for_ranks()
        return path

    def _wait_for_ranks(self) -> None:
        if self.ranks.world > 1:
            barrier()

    def _publish(self) -> Path:
        if self.resumable:
            missing = self.pending_chunks()
            if missing:
                raise RuntimeError(f"{self.partial}: chunks {missing[:10]} were never written")
            self._consolidate()
        if self.path.exists():
            shutil.rmtree(self.path)
        os.replace(self.partial, self.path)
        return self.path


def write_arrays(
    path: Path | str,
    arrays: dict[str, np.ndarray],
    specs: dict[str, ArraySpec],
    attributes: dict,
    compression_level: int = 1,
) -> Path:
    """A small store written in one go from whole arrays (all with the same image count), published atomically."""
    n_images = len(next(iter(arrays.values())))
    store = ChunkedStore(path, n_images, max(1, n_images), specs, attributes, compression_level, resumable=False)
    for name, values in arrays.items():
        store.array(name)[:] = values
    return store.finalize()
