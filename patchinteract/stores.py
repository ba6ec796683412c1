"""Zarr v3 stores written chunk by chunk, resumable after a kill, published atomically.

A store is built in ``<path>.partial``; a bool array ``chunk_complete`` marks
the image chunks whose data are fully written (it is set only after them), so
a restarted job skips those and rewrites the rest. When every chunk is
complete the folder is renamed to ``<path>``. Snakemake deletes a failed job's
declared outputs, but not ``.partial``, so work survives a preemption.
"""

from __future__ import annotations

import logging
import os
import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BloscCodec

log = logging.getLogger(__name__)

COMPLETE_ARRAY = "chunk_complete"
# Per-chunk target when images_per_chunk is "auto": large enough for fast I/O, small enough for memory.
TARGET_CHUNK_BYTES = 16 * 2**20


@dataclass(frozen=True)
class ArraySpec:
    """One array of a store whose first axis is the image axis."""

    shape_per_image: tuple[int, ...]
    dtype: str
    dimension_names: tuple[str, ...]


def images_per_chunk(setting: int | str, bytes_per_image: int) -> int:
    """The configured chunk length, or for "auto" about TARGET_CHUNK_BYTES per chunk."""
    if setting == "auto":
        return max(1, TARGET_CHUNK_BYTES // max(1, bytes_per_image))
    return int(setting)


def compressor(level: int) -> BloscCodec:
    # Byte shuffle groups the exponent bytes of float16 values, which is what makes attention compress.
    return BloscCodec(cname="zstd", clevel=level, shuffle="shuffle")


class ResumableStore:
    """Write ``arrays`` (all with ``n_images`` along axis 0) chunk by chunk into a Zarr group."""

    def __init__(
        self,
        path: Path | str,
        n_images: int,
        chunk: int,
        arrays: dict[str, ArraySpec],
        attributes: dict,
        compression_level: int = 3,
    ):
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.n_images, self.chunk = n_images, chunk
        self.n_chunks = -(-n_images // chunk)
        self.arrays = arrays
        self.attributes = dict(attributes)
        self.group = self._open_or_create(compression_level)
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="zarr-writer")
        self._pending: list[Future] = []

    def _open_or_create(self, compression_level: int) -> zarr.Group:
        if self.partial.exists():
            group = zarr.open_group(self.partial, mode="r+")
            if dict(group.attrs) == self.attributes and all(name in group for name in self.arrays):
                done = int(group[COMPLETE_ARRAY][:].sum())
                log.info("resuming %s: %d of %d chunks already written", self.partial, done, self.n_chunks)
                return group
            log.warning("discarding %s: written for other settings", self.partial)
            shutil.rmtree(self.partial)
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        group = zarr.open_group(self.partial, mode="w", zarr_format=3)
        group.attrs.update(self.attributes)
        for name, spec in self.arrays.items():
            group.create_array(
                name,
                shape=(self.n_images, *spec.shape_per_image),
                chunks=(self.chunk, *spec.shape_per_image),
                dtype=spec.dtype,
                compressors=compressor(compression_level),
                dimension_names=spec.dimension_names,
                fill_value=0,
            )
        group.create_array(
            COMPLETE_ARRAY,
            shape=(self.n_chunks,),
            chunks=(1,),
            dtype="bool",
            fill_value=False,
            dimension_names=("chunk",),
        )
        return group

    def pending_chunks(self) -> list[int]:
        return [int(i) for i in np.flatnonzero(~self.group[COMPLETE_ARRAY][:])]

    def image_range(self, chunk_index: int) -> tuple[int, int]:
        start = chunk_index * self.chunk
        return start, min(start + self.chunk, self.n_images)

    def _write(self, chunk_index: int, data: dict[str, np.ndarray]) -> None:
        start, stop = self.image_range(chunk_index)
        for name, values in data.items():
            self.group[name][start:stop] = values
        self.group[COMPLETE_ARRAY][chunk_index] = True  # only after the data

    def write_chunk(self, chunk_index: int, data: dict[str, np.ndarray]) -> None:
        """Queue one chunk for writing in the background (at most two in flight)."""
        if set(data) != set(self.arrays):
            raise ValueError(f"chunk {chunk_index}: expected arrays {sorted(self.arrays)}, got {sorted(data)}")
        while len(self._pending) >= 2:
            self._pending.pop(0).result()
        self._pending.append(self._writer.submit(self._write, chunk_index, data))

    def flush(self) -> None:
        while self._pending:
            self._pending.pop(0).result()

    def finalize(self) -> Path:
        """Wait for the writes, check every chunk is complete, rename into place."""
        self.flush()
        self._writer.shutdown()
        missing = self.pending_chunks()
        if missing:
            raise RuntimeError(f"{self.partial}: chunks {missing[:10]} were never written")
        if self.path.exists():
            shutil.rmtree(self.path)
        os.replace(self.partial, self.path)
        return self.path
