"""SIFT keypoints per patch (Wu et al., Sec. 2.2): t_j, the number of keypoints of patch j.

SIFT (OpenCV) runs on the grayscale evaluation view, the image exactly as the model sees it. A keypoint
belongs to the patch that contains its location (``assign: location``, the paper), or, with
``assign: region``, to every patch that its scale disc overlaps (docs/analyses.md says why the demo
uses it).

Coordinates: OpenCV puts pixel centres at integers, so pixel k covers [k - 0.5, k + 0.5); a keypoint
at (x, y) lies in the continuous image at (x + 0.5, y + 0.5), where patch column c covers
[c·p, (c + 1)·p).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import zarr
from tqdm.auto import tqdm

from patchinteract.coordinates import patch_number
from patchinteract.models.vit import patch_grid
from patchinteract.stores.chunked import ChunkedStore, auto_chunk, write_arrays
from patchinteract.stores.specs import keypoint_figure_specs, keypoint_specs

log = logging.getLogger(__name__)

KEYPOINT_ASSIGNMENTS = ("location", "region")


def sift_detector(contrast_threshold: float = 0.04, edge_threshold: float = 10.0) -> cv2.SIFT:
    """OpenCV's SIFT with its defaults except the two thresholds (OpenCV's defaults too)."""
    return cv2.SIFT_create(contrastThreshold=contrast_threshold, edgeThreshold=edge_threshold)


def grayscale(view: np.ndarray) -> np.ndarray:
    """(H, W) uint8 luma of an (H, W, 3) RGB uint8 view, as SIFT converts colour images."""
    if view.ndim != 3 or view.shape[2] != 3 or view.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB view, got shape {view.shape} {view.dtype}")
    return cv2.cvtColor(view, cv2.COLOR_RGB2GRAY)


def detect_keypoints(gray: np.ndarray, detector: cv2.SIFT) -> np.ndarray:
    """(K, 3) float32 keypoints of a grayscale uint8 image: x, y (OpenCV pixel centres) and size."""
    points = detector.detect(gray, None)
    return np.array([(*p.pt, p.size) for p in points], dtype=np.float32).reshape(-1, 3)


def location_patches(points: np.ndarray, grid: tuple[int, int], patch: tuple[int, int]) -> np.ndarray:
    """(K,) row-major patch index that contains each keypoint's location (clipped into the grid)."""
    rows, cols = grid
    y = np.clip(np.floor((points[:, 1] + 0.5) / patch[0]).astype(np.int64), 0, rows - 1)
    x = np.clip(np.floor((points[:, 0] + 0.5) / patch[1]).astype(np.int64), 0, cols - 1)
    return patch_number(x, y, cols)


def region_patches(points: np.ndarray, grid: tuple[int, int], patch: tuple[int, int]) -> np.ndarray:
    """(K, N) bool: the patches whose square intersects each keypoint's scale disc (radius size / 2)."""
    rows, cols = grid
    x, y, radius = points[:, 0:1] + 0.5, points[:, 1:2] + 0.5, points[:, 2:3] / 2
    top, left = np.arange(rows) * patch[0], np.arange(cols) * patch[1]
    # distance from the centre to the nearest point of each patch, per axis
    dy = np.clip(y, top, top + patch[0]) - y  # (K, rows)
    dx = np.clip(x, left, left + patch[1]) - x  # (K, cols)
    inside = (dy[:, :, None] ** 2 + dx[:, None, :] ** 2 <= radius[:, :, None] ** 2).reshape(len(points), rows * cols)
    # a disc wholly outside the image still belongs to the patch that contains its centre
    inside[np.arange(len(points)), location_patches(points, grid, patch)] = True
    return inside


def keypoint_counts(points: np.ndarray, grid: tuple[int, int], patch: tuple[int, int], assign: str) -> np.ndarray:
    """t: (N,) keypoints of every patch under ``assign`` (location or region)."""
    n = grid[0] * grid[1]
    if assign == "location":
        return np.bincount(location_patches(points, grid, patch), minlength=n).astype(np.int32)
    if assign == "region":
        return region_patches(points, grid, patch).sum(axis=0, dtype=np.int32)
    raise ValueError(f"semantics.keypoints.assign must be one of {KEYPOINT_ASSIGNMENTS}, got '{assign}'")


class KeypointCounter:
    """Keypoints of one evaluation view: OpenCV releases the GIL in SIFT, so threads share one counter
    (each thread gets its own detector)."""

    def __init__(self, grid: tuple[int, int], patch: tuple[int, int], settings: dict):
        if settings["assign"] not in KEYPOINT_ASSIGNMENTS:
            raise ValueError(
                f"semantics.keypoints.assign must be one of {KEYPOINT_ASSIGNMENTS}, got '{settings['assign']}'"
            )
        self.grid, self.patch, self.settings = grid, patch, settings
        self._detectors: dict[int, cv2.SIFT] = {}

    def points(self, view: np.ndarray) -> np.ndarray:
        thread = threading.get_ident()
        if thread not in self._detectors:
            self._detectors[thread] = sift_detector(
                self.settings["contrast_threshold"], self.settings["edge_threshold"]
            )
        return detect_keypoints(grayscale(view), self._detectors[thread])

    def counts(self, view: np.ndarray) -> np.ndarray:
        return keypoint_counts(self.points(view), self.grid, self.patch, self.settings["assign"])

    def attributes(self) -> dict:
        """What the counts depend on, kept in the store's attributes."""
        return {"grid": list(self.grid), "patch_size": list(self.patch), "keypoints": dict(self.settings)}


def keypoint_summary(store_path: Path | str) -> str:
    """A one-line account of a keypoint store: keypoints per image, keypoint patches, images without any."""
    counts = zarr.open_group(store_path, mode="r")["keypoints"][:]
    return (
        f"{len(counts)} images, {counts.sum(axis=1).mean():.2f} keypoint assignments per image, "
        f"{(counts > 0).mean():.1%} keypoint patches, {int((counts.sum(axis=1) == 0).sum())} images without any"
    )


def keypoint_counter(model, settings: dict) -> KeypointCounter:
    """The counter of a timm ViT's patch grid and patch size."""
    return KeypointCounter(patch_grid(model), tuple(int(p) for p in model.patch_embed.patch_size), settings)


def write_keypoint_store(
    views,
    path: Path | str,
    counter: KeypointCounter,
    *,
    threads: int,
    compression_level: int,
    attributes: dict,
    chunk_images: int = 1024,
) -> Path:
    """The keypoint store of a split: ``keypoints`` (image, patch) and the per-image arrays.

    ``views`` is a dataset of (RGB uint8 view, label, image_id) in manifest order. Written by chunks of
    ``chunk_images`` images (a few seconds of SIFT each) and resumable like the attention store; the
    images of a chunk are counted on ``threads`` threads.
    """
    specs = keypoint_specs(counter.grid[0] * counter.grid[1])
    store = ChunkedStore(
        path, len(views), min(chunk_images, auto_chunk(specs, len(views))), specs, attributes, compression_level
    )

    def one(index):
        view, label, image_id = views[index]
        return counter.counts(np.asarray(view)), label, image_id

    cv2.setNumThreads(1)  # parallel over images, not inside one
    try:
        with ThreadPoolExecutor(max(1, threads)) as pool, tqdm(total=len(views), desc="SIFT", mininterval=5) as bar:
            bar.update(len(views) - sum(len(range(*store.image_range(c))) for c in store.pending_chunks()))
            for chunk_index in store.pending_chunks():
                counts, labels, image_ids = zip(*pool.map(one, range(*store.image_range(chunk_index))), strict=True)
                store.write_chunk(
                    chunk_index,
                    {
                        "keypoints": np.stack(counts),
                        "label": np.asarray(labels, np.int64),
                        "image_id": np.asarray(image_ids, np.int64),
                    },
                )
                bar.update(len(counts))
    finally:
        store.flush()  # on an error too: the chunks already counted stay for a resume
    return store.finalize()


def figure_indices(n_images: int, count: int) -> np.ndarray:
    """``count`` images spread evenly over a split (its first and last included), as store indices."""
    return np.unique(np.linspace(0, n_images - 1, min(count, n_images)).round().astype(np.int64))


def write_figure_keypoints(
    views, path: Path | str, counter: KeypointCounter, count: int, compression_level: int = 1
) -> Path:
    """``count`` views spread over a split (:func:`figure_indices`; manifest order is by class) with their
    keypoints, for the figures: ``view`` (image, H, W, 3) uint8, ``points`` (image, K_max, 3) NaN-padded
    (x, y, size), ``index`` (the store index of each image) and ``image_id``."""
    indices = figure_indices(len(views), count)
    images = [np.asarray(views[i][0]) for i in indices]
    points = [counter.points(image) for image in images]
    width = max([1, *(len(p) for p in points)])
    padded = np.full((len(images), width, 3), np.nan, np.float32)
    for row, p in enumerate(points):
        padded[row, : len(p)] = p
    arrays = {
        "view": np.stack(images),
        "points": padded,
        "index": indices,
        "image_id": np.asarray([views[i][2] for i in indices], np.int64),
    }
    specs = keypoint_figure_specs(images[0].shape, width)
    return write_arrays(path, arrays, specs, counter.attributes(), compression_level)
