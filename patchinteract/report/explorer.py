"""The explorer: one offline page of coordinated views over every analysis of an experiment (Li et al.'s
visual analytics system, Sec. 5 / Fig. 1, with Ma et al.'s maps and Wu et al.'s keypoints).

A researcher picks an image (image overview: the t-SNE of images by head importance), then a head
(head importance, attention strength, attention patterns), then a patch (image and patches), and
every view shows that selection. The page is Bokeh with its scripts inlined (no server, no network)
and the views are driven by ``explorer.js``, inlined beside them. What the page shows of all images
(the overview, the head-pattern layout, each head's entropy over images) is embedded in it; what it
shows of one image (its attention, U, masks, head importance, keypoints) is one small script per
image in ``data/``, loaded when the image is picked: the page opens as fast for 10 images as for
1,000, and the folder can be copied as a whole. Arrays travel as base64 of little-endian bytes;
attention and U rows as uint8 scaled by the row's maximum (error at most max / 510 per entry).
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

from patchinteract.analyses.heads.tables import IMPORTANCE_LABELS, IMPORTANCE_VIEWS, MODE_LABELS
from patchinteract.data.manifest import read_manifest

CONTROLLER = Path(__file__).with_name("explorer.js")
ATTENTION_BLOCK = 64  # images whose attention is read at once
PALETTE = (  # class colours (Category10, then Category20's light tones)
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
)  # fmt: skip


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
    keypoints: str | None = None
    semantics: str | None = None


def explorer_image_ids(analysed_ids: np.ndarray, images: int | str) -> np.ndarray:
    """The first ``images`` of the head analyses' images, in their order ("all": every one)."""
    if images == "all":
        return analysed_ids
    if not isinstance(images, int) or images < 1:
        raise ValueError(f"explorer.images must be 'all' or a positive count, got {images!r}")
    return analysed_ids[:images]


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


def picture_url(manifest_table: pd.DataFrame, root: Path, image_id: int, size: int) -> str:
    """The image as a PNG data URL, resized to ``size`` pixels square (as the model saw it, uncropped)."""
    path = root / manifest_table.loc[manifest_table["image_id"] == image_id, "path"].item()
    with Image.open(path) as image:
        picture = image.convert("RGB").resize((size, size), Image.BICUBIC)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
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


def head_table(path: str, image_ids: np.ndarray) -> pd.DataFrame:
    """A long head table (keyed by image_id, layer, head) restricted to ``image_ids``, sorted by its key."""
    table = pd.read_parquet(path)
    table = table[table["image_id"].isin(image_ids)]
    return table.sort_values([c for c in ("image_id", "layer", "head", "mode", "hop") if c in table]).reset_index(
        drop=True
    )


def page_data(
    stores: ExplorerStores, images: int | str, attention_layers: str | list[int], image_size: int
) -> tuple[dict, dict]:
    """(everything the page embeds, {image_id: that image's payload}) for the explorer's images;
    ``image_size``: the model's input size, at which each picture is sent."""
    overview = pd.read_parquet(stores.image_overview)
    image_ids = explorer_image_ids(overview["image_id"].to_numpy(), images)
    attention = zarr.open_group(stores.attention, mode="r")
    n_prefix = int(attention.attrs["n_prefix_tokens"])
    rows, cols = attention.attrs["grid"]
    n_layers, n_heads = attention["attn"].shape[1:3]
    layers = list(range(n_layers)) if attention_layers == "all" else sorted({int(layer) for layer in attention_layers})
    if any(not 0 <= layer < n_layers for layer in layers):
        raise ValueError(f"explorer.attention_layers: {attention_layers} is not a list of layers in 0..{n_layers - 1}")

    overview = overview.set_index("image_id").loc[image_ids].reset_index()
    importance = head_table(stores.head_importance, image_ids)
    modes = sorted(int(mode) for mode in importance["mode"].unique())  # the modes the model has
    strength = head_table(stores.head_strength, image_ids)
    hops = head_table(stores.attention_strength, image_ids)
    patterns = head_table(stores.attention_patterns, image_ids)
    n_head_rows = n_layers * n_heads
    entropy = strength["entropy"].to_numpy(np.float32).reshape(len(image_ids), n_head_rows)  # (image, layer·heads)
    whole = importance[importance["mode"] == 1]
    band = {
        metric: {
            "mean": whole.groupby(["layer", "head"])[metric].mean().to_list(),
            "std": whole.groupby(["layer", "head"])[metric].std(ddof=0).to_list(),
        }
        for metric in IMPORTANCE_VIEWS
    }
    page = {
        "n_layers": int(n_layers), "n_heads": int(n_heads), "grid": [int(rows), int(cols)],
        "n_prefix": n_prefix, "n_tokens": int(attention["attn"].shape[-1]), "attention_layers": layers,
        "metrics": list(IMPORTANCE_VIEWS),
        "modes": modes, "alphas": list(stores.windows), "betas": list(stores.keeps),
        "fields": list(stores.fields), "semantics": stores.semantics is not None, "palette": list(PALETTE),
        "image_ids": [int(i) for i in image_ids],
        "overview": {
            "image_id": overview["image_id"].astype(int).to_list(), "x": overview["x"].to_list(),
            "y": overview["y"].to_list(), "label": overview["label"].astype(int).to_list(),
            "prediction": overview["prediction"].astype(int).to_list(),
            "true_prob": overview["true_prob"].round(4).to_list(), "metric": str(overview["metric"].iloc[0]),
        },
        "band": band,
        # the distribution of a head's entropy over the images
        "entropy": entropy.round(4).tolist(),
        "patterns": {
            column: patterns[column].to_numpy().round(3).tolist() if patterns[column].dtype.kind == "f"
            else patterns[column].astype(int).tolist()
            for column in ("image_id", "layer", "head", "cls_x", "cls_y", "patch_x", "patch_y", "cluster")
        },
    }  # fmt: skip

    manifest_table, root = read_manifest(stores.manifest)
    attention_rows = _rows_of(stores.attention, image_ids)[1]
    interaction = _selected_rows(stores.interaction, ("U", "dip_score"), image_ids)
    windows = {label: _selected_rows(path, ("window",), image_ids)["window"] for label, path in stores.windows.items()}
    keeps = {label: _selected_rows(path, ("keep",), image_ids)["keep"] for label, path in stores.keeps.items()}
    fields = {label: _selected_rows(path, ("field_members",), image_ids)["field_members"]
              for label, path in stores.fields.items()}  # fmt: skip
    keypoints = _selected_rows(stores.keypoints, ("keypoints",), image_ids)["keypoints"] if stores.keypoints else None
    theta = _selected_rows(stores.semantics, ("theta_patch",), image_ids)["theta_patch"] if stores.semantics else None
    importance_values = importance[list(IMPORTANCE_VIEWS)].to_numpy(np.float32)
    importance_values = importance_values.reshape(len(image_ids), n_head_rows, len(modes), len(IMPORTANCE_VIEWS))
    top_class = np.stack(importance["top5_class"].to_numpy()).reshape(len(image_ids), n_head_rows, len(modes), -1)
    top_prob = np.stack(importance["top5_prob"].to_numpy()).reshape(len(image_ids), n_head_rows, len(modes), -1)
    hop_values = hops["strength"].to_numpy(np.float32).reshape(len(image_ids), n_head_rows, -1)

    payloads = {}
    for start in range(0, len(image_ids), ATTENTION_BLOCK):
        block = slice(start, start + ATTENTION_BLOCK)  # bounded memory at real scale
        attn_block = attention["attn"].get_orthogonal_selection((attention_rows[block], layers))
        for offset, image_id in enumerate(image_ids[block]):
            i = start + offset
            payload = {
                "image_id": int(image_id),
                "label": int(overview["label"].iloc[i]),
                "prediction": int(overview["prediction"].iloc[i]),
                "picture": picture_url(manifest_table, root, int(image_id), image_size),
                "attention": quantised_rows(attn_block[offset].astype(np.float32)),
                "U": quantised_rows(interaction["U"][i]),
                "dip_score": interaction["dip_score"][i].round(5).tolist(),
                "windows": {label: values[i].astype(int).tolist() for label, values in windows.items()},
                "keep": {label: values[i].astype(int).tolist() for label, values in keeps.items()},
                "fields": {label: encode_array(values[i], "uint8") for label, values in fields.items()},
                "importance": encode_array(importance_values[i], "float32"),
                "top_class": top_class[i].astype(int).tolist(),
                "top_prob": top_prob[i].round(4).tolist(),
                "hops": hop_values[i].round(5).tolist(),
                "entropy": entropy[i].round(4).tolist(),
            }
            if keypoints is not None:
                payload["keypoints"] = keypoints[i].astype(int).tolist()
            if theta is not None:
                payload["theta"] = np.nan_to_num(theta[i], nan=-1.0).round(4).tolist()
            payloads[int(image_id)] = payload
    return page, payloads


def write_payloads(folder: Path, payloads: dict[int, dict]) -> None:
    """One script per image, ``data/<image_id>.js``, that hands its payload to the page's controller.

    Scripts, not JSON files: a page opened from the file system may load scripts beside it but
    not fetch files."""
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    for image_id, payload in payloads.items():
        text = json.dumps(payload, separators=(",", ":"))
        (data / f"{image_id}.js").write_text(f"PatchExplorer.receive({image_id},{text});\n")


# ----------------------------------------------------------------------------- the page

OVERLAYS = ("attention row", "U row", "AWD window", "responsive field", "DIP dropped", "DIP score", "keypoints", "θ")
PAGE_TEMPLATE = """{% extends "file.html.jinja" %}
{% block postamble %}
<style>body { font-family: sans-serif; margin: 8px; } .bk-Div { font-size: 13px; }</style>
<script>window.EXPLORER_PAGE = {{ page_json }};</script>
<script>{{ controller }}</script>
{% endblock %}
"""


def explorer_html(page: dict, title: str) -> str:
    """The page: Bokeh views named for ``explorer.js``, Bokeh's scripts and the controller inlined."""
    from bokeh.core.templates import FILE
    from bokeh.embed import file_html
    from bokeh.layouts import column, row
    from bokeh.models import (
        ColorBar,
        ColumnDataSource,
        CustomJS,
        Div,
        HoverTool,
        LinearColorMapper,
        PrintfTickFormatter,
        RadioButtonGroup,
        Range1d,
        Select,
        Slider,
        Span,
        TapTool,
        TextInput,
    )  # fmt: skip
    from bokeh.plotting import figure
    from bokeh.resources import INLINE
    from markupsafe import Markup

    def tap(kind: str, source: ColumnDataSource) -> None:
        source.selected.js_on_change("indices", CustomJS(args={"s": source}, code=f"PatchExplorer.onTap('{kind}', s)"))

    def rerender(widget, attribute: str = "value") -> None:
        widget.js_on_change(attribute, CustomJS(code="PatchExplorer.render()"))

    n_head_rows = page["n_layers"] * page["n_heads"]
    rows, cols = page["grid"]
    status = Div(name="status", text="loading…", width=1200)
    search = TextInput(name="search", title="Image id (Enter):", width=160)
    search.js_on_change("value", CustomJS(args={"w": search}, code="PatchExplorer.onSearch(w.value)"))

    # 1. image overview
    overview = page["overview"]
    overview_source = ColumnDataSource(
        {key: values for key, values in overview.items() if key != "metric"}
        | {"color": [page["palette"][label % len(page["palette"])] for label in overview["label"]]},
        name="overview_source",
    )
    overview_figure = figure(
        name="overview_figure", width=420, height=380, tools="tap,pan,wheel_zoom,reset",
        title=f"t-SNE of images by I_{overview['metric']}; colour: class",
    )  # fmt: skip
    overview_figure.scatter("x", "y", source=overview_source, color="color", size=7, alpha=0.8,
                            selection_line_color="black", selection_line_width=3,
                            nonselection_alpha=0.35)  # fmt: skip
    overview_figure.add_tools(HoverTool(tooltips=[("image", "@image_id"), ("class", "@label"),
                                                  ("predicted", "@prediction"), ("P[y]", "@true_prob")]))  # fmt: skip
    tap("image", overview_source)

    # 2. head importance: the four metrics over all heads, mean ± std band over images
    importance_source = ColumnDataSource(
        dict(flat=list(range(n_head_rows)), name=[""] * n_head_rows,
             **{metric: [0.0] * n_head_rows for metric in page["metrics"]}),
        name="importance_source",
    )  # fmt: skip
    importance_figures = []
    for metric in page["metrics"]:
        band = page["band"][metric]
        band_source = ColumnDataSource(dict(
            flat=list(range(n_head_rows)), mean=band["mean"],
            lower=[m - s for m, s in zip(band["mean"], band["std"], strict=True)],
            upper=[m + s for m, s in zip(band["mean"], band["std"], strict=True)],
        ))  # fmt: skip
        plot = figure(name=f"importance_{metric}", width=300, height=170, tools="tap", title=IMPORTANCE_LABELS[metric],
                      x_axis_label="head (layer-major)")  # fmt: skip
        plot.varea("flat", "lower", "upper", source=band_source, fill_color="#cccccc", fill_alpha=0.6)
        plot.line("flat", "mean", source=band_source, color="#888888")
        plot.scatter("flat", metric, source=importance_source, size=6, color="#1f77b4",
                     selection_color="red", nonselection_alpha=0.7)  # fmt: skip
        plot.add_tools(HoverTool(tooltips=[("head", "@name"), (metric, f"@{metric}")]))
        plot.yaxis.formatter = PrintfTickFormatter(format="%.2g")
        importance_figures.append(plot)
    tap("head", importance_source)
    mode_labels = [MODE_LABELS[mode] for mode in page["modes"]]
    modes_figure = figure(name="modes_figure", width=330, height=220, x_range=mode_labels, tools="",
                          title="Pruning modes")  # fmt: skip
    modes_figure.vbar(x="mode", top="value", width=0.8, source=ColumnDataSource(dict(mode=[], value=[]),
                                                                                 name="modes_source"))  # fmt: skip
    modes_figure.xaxis.major_label_orientation = 0.7
    modes_figure.yaxis.formatter = PrintfTickFormatter(format="%.2g")
    mode_metric = Select(name="mode_metric", title="Metric of the modes:", value=page["metrics"][0],
                         options=page["metrics"], width=150)  # fmt: skip
    pruning_mode = Select(name="pruning_mode", title="Pruning mode of the top-5:", value="1",
                          options=[str(m) for m in page["modes"]], width=150)  # fmt: skip
    top5_figure = figure(name="top5_figure", width=330, height=220, y_range=[""], x_range=Range1d(0, 1), tools="",
                         title="Top-5 classes", x_axis_label="probability")  # fmt: skip
    top5_figure.hbar(y="rank", right="prob", height=0.7, color="color",
                     source=ColumnDataSource(dict(rank=[], prob=[], color=[]), name="top5_source"))  # fmt: skip
    for widget in (mode_metric, pruning_mode):
        rerender(widget)

    # 3. attention strength
    entropy_source = ColumnDataSource(dict(flat=[], layer=[], entropy=[], name=[]), name="entropy_source")
    entropy_figure = figure(name="entropy_figure", width=330, height=240, tools="tap", x_axis_label="layer",
                            y_axis_label="normalised entropy",
                            title="Entropy of every head against its layer")  # fmt: skip
    entropy_figure.scatter("layer", "entropy", source=entropy_source, size=8, selection_color="red",
                           nonselection_alpha=0.6)  # fmt: skip
    entropy_figure.add_tools(HoverTool(tooltips=[("head", "@name"), ("entropy", "@entropy")]))
    tap("head", entropy_source)
    khop_figure = figure(name="khop_figure", width=330, height=240, tools="", x_axis_label="hop k",
                         y_axis_label="s_k", title="k-hop strength")  # fmt: skip
    khop_figure.vbar(x="hop", top="strength", width=0.8, source=ColumnDataSource(dict(hop=[], strength=[]),
                                                                                  name="khop_source"))  # fmt: skip
    hist_figure = figure(name="hist_figure", width=330, height=240, tools="", x_axis_label="normalised entropy",
                         y_axis_label="images", title="Entropy over images")  # fmt: skip
    hist_figure.quad(left="left", right="right", top="count", bottom=0, color="#9ecae1",
                     source=ColumnDataSource(dict(left=[], right=[], count=[]), name="hist_source"))  # fmt: skip
    hist_figure.xaxis.formatter = PrintfTickFormatter(format="%.3f")
    hist_figure.add_layout(Span(name="entropy_marker", location=0, dimension="height", line_color="red", line_width=2))

    # 4. attention patterns
    pattern_kind = RadioButtonGroup(name="pattern_kind", labels=["CLS pattern", "patch pattern"], active=0)
    rerender(pattern_kind, "active")
    patterns_figure = figure(name="patterns_figure", width=420, height=380, tools="tap,pan,wheel_zoom,reset",
                             title="Attention patterns")  # fmt: skip
    patterns_figure.scatter("x", "y", source=ColumnDataSource(dict(x=[], y=[], color=[]), name="patterns_all",
                                                              tags=["none"]),
                            size=3, color="color", alpha=0.15)  # fmt: skip
    patterns_image = ColumnDataSource(dict(x=[], y=[], flat=[], name=[]), name="patterns_image")
    patterns_figure.scatter("x", "y", source=patterns_image, size=9, color="#1f77b4", line_color="black",
                            selection_color="red", nonselection_alpha=0.8)  # fmt: skip
    patterns_figure.add_tools(HoverTool(tooltips=[("head", "@name")]))
    tap("head", patterns_image)
    threshold = Slider(name="threshold", title="Hide entries below this share of the row's max", start=0, end=1,
                       step=0.01, value=0.0, width=330)  # fmt: skip
    rerender(threshold)
    attention_colours = LinearColorMapper(palette="Viridis256", low=0, nan_color=(0, 0, 0, 0))
    tokens = page["n_tokens"]
    matrix_figure = figure(name="matrix_figure", width=420, height=400, tools="hover", x_axis_label="key token",
                           y_axis_label="query token", title="Attention matrix", x_range=Range1d(0, tokens),
                           y_range=Range1d(tokens, 0), tooltips=[("attention", "@image")])  # fmt: skip
    matrix_figure.image(image="image", x=0, y=0, dw="dw", dh="dh", color_mapper=attention_colours,
                        source=ColumnDataSource(dict(image=[], dw=[], dh=[]), name="matrix_source"))  # fmt: skip
    matrix_figure.add_layout(ColorBar(color_mapper=attention_colours, width=10), "right")

    # 5. image and patches
    overlay = Select(name="overlay", title="Show over the image:", value=OVERLAYS[0], options=list(OVERLAYS), width=160)
    alpha = Select(name="alpha", title="AWD α:", value=page["alphas"][0] if page["alphas"] else "",
                   options=page["alphas"], width=90)  # fmt: skip
    beta = Select(name="beta", title="DIP β:", value=page["betas"][0] if page["betas"] else "", options=page["betas"],
                  width=90)  # fmt: skip
    field = Select(name="field", title="Field (α, β):", value=page["fields"][0] if page["fields"] else "",
                   options=page["fields"], width=120)  # fmt: skip
    for widget in (overlay, alpha, beta, field):
        rerender(widget)
    picture_figure = figure(name="picture_figure", width=440, height=440, tools="tap", x_range=Range1d(0, cols),
                            y_range=Range1d(rows, 0), title="Image and patches: click a patch")  # fmt: skip
    picture_figure.image_url(url="url", x="x", y="y", w="w", h="h", anchor="top_left",
                             source=ColumnDataSource(dict(url=[], x=[], y=[], w=[], h=[]),
                                                     name="picture_source"))  # fmt: skip
    patch_colours = LinearColorMapper(palette="Inferno256", low=0, high=1, nan_color=(0, 0, 0, 0))
    patches = [(p // cols, p % cols) for p in range(rows * cols)]
    patch_source = ColumnDataSource(dict(
        left=[c for _, c in patches], right=[c + 1 for _, c in patches], top=[r for r, _ in patches],
        bottom=[r + 1 for r, _ in patches], patch=list(range(rows * cols)), raw=[0.0] * len(patches),
        value=[0.0] * len(patches), alpha=[0.0] * len(patches), line=[0.3] * len(patches),
    ), name="patch_source")  # fmt: skip
    picture_figure.quad(left="left", right="right", top="top", bottom="bottom", source=patch_source,
                        fill_color={"field": "value", "transform": patch_colours}, fill_alpha="alpha",
                        line_color="white", line_width="line", selection_line_color="cyan",
                        nonselection_fill_alpha="alpha", selection_fill_alpha="alpha")  # fmt: skip
    picture_figure.add_tools(HoverTool(tooltips=[("patch", "@patch"), ("value", "@raw")]))
    picture_figure.axis.visible = False
    tap("patch", patch_source)
    picture_figure.add_layout(ColorBar(color_mapper=patch_colours, width=10), "right")
    picture_figure.select_one(TapTool).behavior = "select"

    def heading(text: str) -> Div:
        return Div(text=f"<h3 style='margin:4px 0'>{text}</h3>")

    layout = column(
        Div(text=f"<h2 style='margin:0'>{title}</h2>"),
        row(search, status),
        row(
            column(heading("1 · Image overview"), overview_figure),
            column(heading("5 · Image and patches"), row(overlay, alpha, beta, field), picture_figure),
            column(heading("4 · Attention pattern"), pattern_kind, patterns_figure),
        ),
        heading("2 · Head importance (blue: this image; grey: mean ± std over images). Click a head."),
        row(*importance_figures),
        row(column(mode_metric, modes_figure), column(pruning_mode, top5_figure), column(threshold, matrix_figure)),
        heading("3 · Attention strength"),
        row(entropy_figure, khop_figure, hist_figure),
    )
    template = FILE.environment.from_string(PAGE_TEMPLATE)  # Bokeh's own page, extended
    return file_html(
        layout, resources=INLINE, title=title, template=template,
        template_variables={"page_json": Markup(json.dumps(page, separators=(",", ":"))),
                            "controller": Markup(CONTROLLER.read_text())},
    )  # fmt: skip


def write_explorer(folder: Path | str, page: dict, payloads: dict[int, dict], title: str) -> Path:
    """``folder``/index.html and ``folder``/data/<image_id>.js; returns the page's path."""
    folder = Path(folder)
    write_payloads(folder, payloads)
    index = folder / "index.html"
    index.write_text(explorer_html(page, title))
    return index
