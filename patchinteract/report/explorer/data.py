"""What the explorer page shows, gathered from an experiment's stores and tables: what the page embeds
of all images (:func:`page_summary`) and one payload per image (:func:`image_payloads`), written as
``data/<image_id>.js``. Arrays travel as base64 of little-endian bytes; attention and U rows as uint8
scaled by the row's maximum (error at most max / 510 per entry).
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import zarr
from PIL import Image

from patchinteract.analyses.heads.head_tables import IMPORTANCE_VIEWS
from patchinteract.analyses.heads.sample import explorer_images
from patchinteract.data.manifest import class_names, image_path, read_manifest, resized_image

ATTENTION_BLOCK = 64  # images whose attention is read at once
PALETTE = (  # class colours (Category10, then Category20's light tones)
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#aec7e8",
    "#ffbb78",
    "#98df8a",
    "#ff9896",
    "#c5b0d5",
    "#c49c94",
    "#f7b6d2",
    "#c7c7c7",
    "#dbdb8d",
    "#9edae5",
)
PATTERN_COLUMNS = ("image_id", "layer", "head", "cls_x", "cls_y", "patch_x", "patch_y", "cluster")


@dataclass(frozen=True)
class ExplorerStores:
    """Where the page's data come from (one experiment, one split)."""

    manifest: str
    attention: str
    interaction: str
    windows: dict[str, str]  # alpha label -> window store
    keeps: dict[str, str]  # beta label -> keep store
    fields: dict[str, str]  # "a<alpha>_b<beta>" -> field store
    head_importance: str
    image_overview: str
    head_strength: str
    attention_strength: str
    attention_patterns: str
    head_summary: str  # its importance intervals (the head_summary rule's table)
    keypoints: str | None = None
    semantics: str | None = None
    class_names: str | None = None  # datasets.<name>.class_names


def encode_array(values: np.ndarray, dtype: str) -> str:
    """Base64 of the values' little-endian bytes (``dtype``: uint8, int16, float32)."""
    return base64.b64encode(np.ascontiguousarray(values, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()).decode()


def quantised_rows(values: np.ndarray) -> dict:
    """Non-negative rows (…, n) as uint8 scaled by each row's maximum: {'shape', 'max' (float32), 'q' (uint8)}.

    An entry v of a row with maximum m is sent as round(255 · v / m); the page shows q · m / 255.
    """
    values = np.asarray(values, dtype=np.float32)
    peak = values.max(axis=-1, keepdims=True)
    scale = np.where(peak > 0, peak, 1.0)
    quantised = np.rint(np.clip(values, 0, None) / scale * 255).astype(np.uint8)
    return {
        "shape": list(values.shape),
        "max": encode_array(peak[..., 0], "float32"),
        "q": encode_array(quantised, "uint8"),
    }


def dequantised_rows(encoded: dict) -> np.ndarray:
    """The inverse of :func:`quantised_rows` (what the page computes), for tests and checks."""
    shape = encoded["shape"]
    peak = np.frombuffer(base64.b64decode(encoded["max"]), "<f4").reshape(*shape[:-1], 1)
    quantised = np.frombuffer(base64.b64decode(encoded["q"]), np.uint8).reshape(shape)
    return quantised.astype(np.float32) * peak / 255


def picture_url(path: Path, size: int) -> str:
    """The image as a PNG data URL, resized to ``size`` pixels square (as the model saw it, uncropped)."""
    buffer = io.BytesIO()
    Image.fromarray(resized_image(path, size)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _rows_of(store: str, image_ids: np.ndarray) -> tuple[zarr.Group, np.ndarray]:
    """A store and the positions of ``image_ids`` in it (every one must be there)."""
    group = zarr.open_group(store, mode="r")
    stored = group["image_id"][:]
    position = {int(image_id): row for row, image_id in enumerate(stored)}
    missing = [int(i) for i in image_ids if int(i) not in position]
    if missing:
        raise ValueError(f"{store} has no data for images {missing[:5]} (of {len(missing)}): rebuild it")
    return group, np.array([position[int(i)] for i in image_ids])


def _selected_rows(store: str, names: tuple[str, ...], image_ids: np.ndarray) -> dict[str, np.ndarray]:
    """Arrays ``names`` of a store at the rows of ``image_ids`` (each chunk read once)."""
    group, rows = _rows_of(store, image_ids)
    return {name: group[name].get_orthogonal_selection(rows) for name in names}


def _labelled_rows(stores: dict[str, str], name: str, image_ids: np.ndarray) -> dict[str, np.ndarray]:
    """Array ``name`` at the rows of ``image_ids`` of each store of a {label: store} mapping (α, β, fields)."""
    return {label: _selected_rows(path, (name,), image_ids)[name] for label, path in stores.items()}


def head_table(path: str, image_ids: np.ndarray) -> pd.DataFrame:
    """A long head table (keyed by image_id, layer, head) restricted to ``image_ids``, sorted by its key."""
    table = pd.read_parquet(path)
    table = table[table["image_id"].isin(image_ids)]
    return table.sort_values([c for c in ("image_id", "layer", "head", "mode", "hop") if c in table]).reset_index(
        drop=True
    )


@dataclass(frozen=True)
class ExplorerSelection:
    """The explorer's images and the attention it shows of them: layers, and the model's dimensions."""

    image_ids: np.ndarray
    layers: list[int]
    n_layers: int
    n_heads: int
    n_prefix: int
    grid: tuple[int, int]
    n_tokens: int

    @property
    def n_head_rows(self) -> int:
        return self.n_layers * self.n_heads


def explorer_selection(stores: ExplorerStores, images: int | str, attention_layers: str | list[int]):
    """The first ``images`` of the image overview and the ``attention_layers`` (checked against the store)."""
    overview = pd.read_parquet(stores.image_overview, columns=["image_id"])
    image_ids = explorer_images(overview["image_id"].to_numpy(), images)
    attention = zarr.open_group(stores.attention, mode="r")
    n_layers, n_heads = attention["attn"].shape[1:3]
    layers = list(range(n_layers)) if attention_layers == "all" else sorted({int(layer) for layer in attention_layers})
    if any(not 0 <= layer < n_layers for layer in layers):
        raise ValueError(f"explorer.attention_layers: {attention_layers} is not a list of layers in 0..{n_layers - 1}")
    rows, cols = attention.attrs["grid"]
    return ExplorerSelection(
        image_ids,
        layers,
        int(n_layers),
        int(n_heads),
        int(attention.attrs["n_prefix_tokens"]),
        (int(rows), int(cols)),
        int(attention["attn"].shape[-1]),
    )


def importance_band(summary: pd.DataFrame) -> dict:
    """Per metric, from the head summary (whole head pruned, mode 1; every image of the head analyses): each
    head's mean over the images, the interval of that mean, ± std (None where the metric is undefined, e.g.
    I_CLS without a prefix token: the page draws no band there), and whether it is surely among the top k."""
    summary = summary.sort_values(["layer", "head"])
    columns = {"mean": "mean", "std": "std", "low": "ci_low", "high": "ci_high"}

    def values(column: str) -> list[float | None]:
        return [None if pd.isna(value) else float(value) for value in summary[column]]

    return {
        metric: {key: values(f"{metric}_{column}") for key, column in columns.items()}
        | {"top_k": summary[f"{metric}_top_k"].eq(True).to_list()}
        for metric in IMPORTANCE_VIEWS
    }


def page_summary(stores: ExplorerStores, selection: ExplorerSelection) -> dict:
    """What the page embeds of all its images: the overview, the importance band, the modes the model
    has, every head's entropy over the images and the pattern layouts."""
    image_ids = selection.image_ids
    overview = pd.read_parquet(stores.image_overview).set_index("image_id").loc[image_ids].reset_index()
    importance = head_table(stores.head_importance, image_ids)
    entropy = head_table(stores.head_strength, image_ids)["entropy"].to_numpy(np.float32)
    patterns = head_table(stores.attention_patterns, image_ids)
    names = class_names(read_manifest(stores.manifest)[0], stores.class_names)
    return {
        "n_layers": selection.n_layers,
        "n_heads": selection.n_heads,
        "grid": list(selection.grid),
        "n_prefix": selection.n_prefix,
        "n_tokens": selection.n_tokens,
        "attention_layers": selection.layers,
        "metrics": list(IMPORTANCE_VIEWS),
        "modes": sorted(int(mode) for mode in importance["mode"].unique()),
        "alphas": list(stores.windows),
        "betas": list(stores.keeps),
        "fields": list(stores.fields),
        "semantics": stores.semantics is not None,
        "palette": list(PALETTE),
        "class_names": names,
        "image_ids": [int(i) for i in image_ids],
        "overview": {
            "image_id": overview["image_id"].astype(int).to_list(),
            "x": overview["x"].to_list(),
            "y": overview["y"].to_list(),
            "label": overview["label"].astype(int).to_list(),
            "prediction": overview["prediction"].astype(int).to_list(),
            "class_name": [names[label] for label in overview["label"].astype(int)],
            "predicted_name": [names[label] for label in overview["prediction"].astype(int)],
            "true_prob": overview["true_prob"].round(4).to_list(),
            "metric": str(overview["metric"].iloc[0]),
        },
        "band": importance_band(pd.read_parquet(stores.head_summary)),
        # the distribution of a head's entropy over the images
        "entropy": entropy.reshape(len(image_ids), selection.n_head_rows).round(4).tolist(),
        "patterns": {
            column: patterns[column].to_numpy().round(3).tolist()
            if patterns[column].dtype.kind == "f"
            else patterns[column].astype(int).tolist()
            for column in PATTERN_COLUMNS
        },
    }


def per_image_arrays(stores: ExplorerStores, selection: ExplorerSelection) -> dict:
    """Every per-image array of the payloads but the attention, in the order of the selection's images."""
    image_ids, heads = selection.image_ids, selection.n_head_rows
    importance = head_table(stores.head_importance, image_ids)
    modes = importance["mode"].nunique()

    def by_head(values: np.ndarray) -> np.ndarray:
        return values.reshape(len(image_ids), heads, modes, -1)

    arrays = _selected_rows(stores.interaction, ("U", "dip_score"), image_ids)
    arrays |= {
        "windows": _labelled_rows(stores.windows, "window", image_ids),
        "keep": _labelled_rows(stores.keeps, "keep", image_ids),
        "fields": _labelled_rows(stores.fields, "field_members", image_ids),
        "importance": by_head(importance[list(IMPORTANCE_VIEWS)].to_numpy(np.float32)),
        "top_class": by_head(np.stack(importance["top5_class"].to_numpy())),
        "top_prob": by_head(np.stack(importance["top5_prob"].to_numpy())),
        "hops": head_table(stores.attention_strength, image_ids)["strength"]
        .to_numpy(np.float32)
        .reshape(len(image_ids), heads, -1),
        "entropy": head_table(stores.head_strength, image_ids)["entropy"]
        .to_numpy(np.float32)
        .reshape(len(image_ids), heads),
    }
    if stores.keypoints:
        arrays["keypoints"] = _selected_rows(stores.keypoints, ("keypoints",), image_ids)["keypoints"]
    if stores.semantics:
        arrays["theta"] = _selected_rows(stores.semantics, ("theta_patch",), image_ids)["theta_patch"]
    return arrays


def image_payload(arrays: dict, i: int, attention: np.ndarray) -> dict:
    """What the page shows of the selection's ``i``-th image, but its identity and picture."""
    payload = {
        "attention": quantised_rows(attention.astype(np.float32)),
        "U": quantised_rows(arrays["U"][i]),
        "dip_score": arrays["dip_score"][i].round(5).tolist(),
        "windows": {label: values[i].astype(int).tolist() for label, values in arrays["windows"].items()},
        "keep": {label: values[i].astype(int).tolist() for label, values in arrays["keep"].items()},
        "fields": {label: encode_array(values[i], "uint8") for label, values in arrays["fields"].items()},
        "importance": encode_array(arrays["importance"][i], "float32"),
        "top_class": arrays["top_class"][i].astype(int).tolist(),
        "top_prob": arrays["top_prob"][i].round(4).tolist(),
        "hops": arrays["hops"][i].round(5).tolist(),
        "entropy": arrays["entropy"][i].round(4).tolist(),
    }
    if "keypoints" in arrays:
        payload["keypoints"] = arrays["keypoints"][i].astype(int).tolist()
    if "theta" in arrays:
        payload["theta"] = np.nan_to_num(arrays["theta"][i], nan=-1.0).round(4).tolist()
    return payload


def image_payloads(stores: ExplorerStores, selection: ExplorerSelection, page: dict, image_size: int) -> dict:
    """{image_id: its payload} for the selection's images; ``image_size``: the model's input size, at which
    each picture is sent. The attention is read a block of images at a time (bounded memory at real scale)."""
    table, root = read_manifest(stores.manifest)
    attention = zarr.open_group(stores.attention, mode="r")["attn"]
    attention_rows = _rows_of(stores.attention, selection.image_ids)[1]
    arrays = per_image_arrays(stores, selection)
    overview = page["overview"]
    payloads = {}
    for start in range(0, len(selection.image_ids), ATTENTION_BLOCK):
        block = slice(start, start + ATTENTION_BLOCK)
        attention_block = attention.get_orthogonal_selection((attention_rows[block], selection.layers))
        for offset, image_id in enumerate(selection.image_ids[block]):
            i = start + offset
            payloads[int(image_id)] = {
                "image_id": int(image_id),
                "label": overview["label"][i],
                "prediction": overview["prediction"][i],
                "picture": picture_url(image_path(table, root, int(image_id)), image_size),
            } | image_payload(arrays, i, attention_block[offset])
    return payloads


def page_data(stores: ExplorerStores, images: int | str, attention_layers: str | list[int], image_size: int):
    """(everything the page embeds, {image_id: that image's payload}) for the explorer's images."""
    selection = explorer_selection(stores, images, attention_layers)
    page = page_summary(stores, selection)
    return page, image_payloads(stores, selection, page, image_size)


def write_payloads(folder: Path, payloads: dict[int, dict]) -> None:
    """One script per image, ``data/<image_id>.js``, that hands its payload to the page's controller.

    Scripts, not JSON files: a page opened from the file system may load scripts beside it but
    not fetch files."""
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    for image_id, payload in payloads.items():
        text = json.dumps(payload, separators=(",", ":"))
        (data / f"{image_id}.js").write_text(f"PatchExplorer.receive({image_id},{text});\n")
