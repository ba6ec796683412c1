"""The explorer's page: five views as Bokeh models, each named for the controller (``controller.js``),
which is inlined beside Bokeh's own scripts (no server, no network). The page hands the controller
:data:`MODEL_NAMES`, the one list of the names both sides use.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
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
)
from bokeh.plotting import figure
from bokeh.resources import INLINE
from markupsafe import Markup

from patchinteract.analyses.heads.head_tables import IMPORTANCE_LABELS, MODE_LABELS
from patchinteract.coordinates import grid_xy

CONTROLLER = Path(__file__).with_name("controller.js")
# Every Bokeh model the controller looks up by name. The page hands the list over; the controller
# refuses a name that is not on it and says which listed model the page lacks.
MODEL_NAMES = (
    "status",
    "search",
    "overview_source",
    "importance_source",
    "mode_metric",
    "modes_figure",
    "modes_source",
    "pruning_mode",
    "top5_figure",
    "top5_source",
    "entropy_source",
    "khop_figure",
    "khop_source",
    "hist_figure",
    "hist_source",
    "entropy_marker",
    "pattern_kind",
    "patterns_figure",
    "patterns_all",
    "patterns_image",
    "threshold",
    "matrix_figure",
    "matrix_source",
    "overlay",
    "alpha",
    "beta",
    "field",
    "picture_figure",
    "picture_source",
    "patch_source",
)
STRENGTH_SIZE = (330, 240)
OVERLAYS = ("attention row", "U row", "AWD window", "responsive field", "DIP dropped", "DIP score", "keypoints", "θ")
PAGE_TEMPLATE = """{% extends "file.html.jinja" %}
{% block postamble %}
<style>body { font-family: sans-serif; margin: 8px; } .bk-Div { font-size: 13px; }</style>
<script>window.EXPLORER_PAGE = {{ page_json }};</script>
<script>{{ controller }}</script>
{% endblock %}
"""


def named(name: str) -> str:
    """A model name of :data:`MODEL_NAMES` (a name off the list is a mistake the controller would not see)."""
    if name not in MODEL_NAMES:
        raise ValueError(f"'{name}' is not one of the explorer's MODEL_NAMES")
    return name


def tap(kind: str, source: ColumnDataSource) -> None:
    """A click on ``source`` picks an image, a head or a patch."""
    source.selected.js_on_change("indices", CustomJS(args={"s": source}, code=f"PatchExplorer.onTap('{kind}', s)"))


def rerender(widget, attribute: str = "value") -> None:
    widget.js_on_change(attribute, CustomJS(code="PatchExplorer.render()"))


def heading(text: str) -> Div:
    return Div(text=f"<h3 style='margin:4px 0'>{text}</h3>")


def plot(title: str, size: tuple[int, int], name: str | None = None, tools: str = "", **options):
    """A Bokeh figure of the page (``name``: one of :data:`MODEL_NAMES`, for those the controller updates)."""
    width, height = size
    return figure(name=named(name) if name else None, width=width, height=height, tools=tools, title=title, **options)


def empty_source(name: str, *columns: str) -> ColumnDataSource:
    """A data source the controller fills."""
    return ColumnDataSource({column: [] for column in columns}, name=named(name))


def overview_view(page: dict):
    """1. The image overview: the t-SNE of images by head importance, coloured by class."""
    overview = page["overview"]
    source = ColumnDataSource(
        {key: values for key, values in overview.items() if key != "metric"}
        | {"color": [page["palette"][label % len(page["palette"])] for label in overview["label"]]},
        name=named("overview_source"),
    )
    images = plot(
        f"t-SNE of images by I_{overview['metric']}; colour: class", (420, 380), tools="tap,pan,wheel_zoom,reset"
    )
    images.scatter(
        "x",
        "y",
        source=source,
        color="color",
        size=7,
        alpha=0.8,
        selection_line_color="black",
        selection_line_width=3,
        nonselection_alpha=0.35,
    )
    images.add_tools(
        HoverTool(
            tooltips=[
                ("image", "@image_id"),
                ("class", "@class_name"),
                ("predicted", "@predicted_name"),
                ("P[y]", "@true_prob"),
            ]
        )
    )
    tap("image", source)
    return images


def importance_views(page: dict) -> list:
    """2a. The four importance metrics of every head (this image) over the band of all images: ± std (light),
    the interval of the mean (dark), the mean, and a star on a head surely among the top k."""
    heads = page["n_layers"] * page["n_heads"]
    source = ColumnDataSource(
        dict(flat=list(range(heads)), name=[""] * heads, **{metric: [0.0] * heads for metric in page["metrics"]}),
        name=named("importance_source"),
    )
    plots = []
    for metric in page["metrics"]:
        # undefined (None in the page's JSON): NaN, which Bokeh leaves as a gap
        band = {key: np.array(values, dtype=float) for key, values in page["band"][metric].items() if key != "top_k"}
        mean, std = band["mean"], band["std"]
        spread = ColumnDataSource(
            dict(
                flat=list(range(heads)),
                mean=mean,
                lower=mean - std,
                upper=mean + std,
                low=band["low"],
                high=band["high"],
            )
        )
        top = [head for head, surely in enumerate(page["band"][metric]["top_k"]) if surely]
        metric_plot = plot(IMPORTANCE_LABELS[metric], (300, 170), tools="tap", x_axis_label="head (layer-major)")
        metric_plot.varea("flat", "lower", "upper", source=spread, fill_color="#dddddd", fill_alpha=0.6)
        metric_plot.varea("flat", "low", "high", source=spread, fill_color="#999999", fill_alpha=0.6)
        metric_plot.line("flat", "mean", source=spread, color="#666666")
        metric_plot.scatter(top, [mean[head] for head in top], marker="star", size=9, color="#d62728")
        metric_plot.scatter(
            "flat", metric, source=source, size=6, color="#1f77b4", selection_color="red", nonselection_alpha=0.7
        )
        metric_plot.add_tools(HoverTool(tooltips=[("head", "@name"), (metric, f"@{metric}")]))
        metric_plot.yaxis.formatter = PrintfTickFormatter(format="%.2g")
        plots.append(metric_plot)
    tap("head", source)
    return plots


def pruning_views(page: dict) -> tuple:
    """2b. The picked head's pruning modes (the modes the model has) and its top-5 classes under one mode."""
    modes = plot("Pruning modes", (330, 220), "modes_figure", x_range=[MODE_LABELS[mode] for mode in page["modes"]])
    modes.vbar(x="mode", top="value", width=0.8, source=empty_source("modes_source", "mode", "value"))
    modes.xaxis.major_label_orientation = 0.7
    modes.yaxis.formatter = PrintfTickFormatter(format="%.2g")
    metric = Select(
        name=named("mode_metric"),
        title="Metric of the modes:",
        value=page["metrics"][0],
        options=page["metrics"],
        width=150,
    )
    mode = Select(
        name=named("pruning_mode"),
        title="Pruning mode of the top-5:",
        value="1",
        options=[str(m) for m in page["modes"]],
        width=150,
    )
    top5 = plot(
        "Top-5 classes", (330, 220), "top5_figure", y_range=[""], x_range=Range1d(0, 1), x_axis_label="probability"
    )
    top5.hbar(
        y="rank", right="prob", height=0.7, color="color", source=empty_source("top5_source", "rank", "prob", "color")
    )
    for widget in (metric, mode):
        rerender(widget)
    return column(metric, modes), column(mode, top5)


def strength_views() -> list:
    """3. Attention strength: every head's entropy against its layer, the picked head's k-hop strength and
    its entropy over the images."""
    entropy_source = empty_source("entropy_source", "flat", "layer", "entropy", "name")
    entropy = plot(
        "Entropy of every head against its layer",
        STRENGTH_SIZE,
        tools="tap",
        x_axis_label="layer",
        y_axis_label="normalised entropy",
    )
    entropy.scatter("layer", "entropy", source=entropy_source, size=8, selection_color="red", nonselection_alpha=0.6)
    entropy.add_tools(HoverTool(tooltips=[("head", "@name"), ("entropy", "@entropy")]))
    tap("head", entropy_source)
    khop = plot("k-hop strength", STRENGTH_SIZE, "khop_figure", x_axis_label="hop k", y_axis_label="s_k")
    khop.vbar(x="hop", top="strength", width=0.8, source=empty_source("khop_source", "hop", "strength"))
    histogram = plot(
        "Entropy over images", STRENGTH_SIZE, "hist_figure", x_axis_label="normalised entropy", y_axis_label="images"
    )
    histogram.quad(
        left="left",
        right="right",
        top="count",
        bottom=0,
        color="#9ecae1",
        source=empty_source("hist_source", "left", "right", "count"),
    )
    histogram.xaxis.formatter = PrintfTickFormatter(format="%.3f")
    histogram.add_layout(
        Span(name=named("entropy_marker"), location=0, dimension="height", line_color="red", line_width=2)
    )
    return [entropy, khop, histogram]


def pattern_views(page: dict) -> tuple:
    """4a. Attention patterns: the t-SNE of all heads (CLS or patch patterns), the image's heads on top."""
    kind = RadioButtonGroup(name=named("pattern_kind"), labels=["CLS pattern", "patch pattern"], active=0)
    rerender(kind, "active")
    patterns = plot("Attention patterns", (420, 380), "patterns_figure", tools="tap,pan,wheel_zoom,reset")
    context = ColumnDataSource(dict(x=[], y=[], color=[]), name=named("patterns_all"), tags=["none"])
    patterns.scatter("x", "y", source=context, size=3, color="color", alpha=0.15)
    mine = empty_source("patterns_image", "x", "y", "flat", "name")
    patterns.scatter(
        "x",
        "y",
        source=mine,
        size=9,
        color="#1f77b4",
        line_color="black",
        selection_color="red",
        nonselection_alpha=0.8,
    )
    patterns.add_tools(HoverTool(tooltips=[("head", "@name")]))
    tap("head", mine)
    threshold = Slider(
        name=named("threshold"),
        title="Hide entries below this share of the row's max",
        start=0,
        end=1,
        step=0.01,
        value=0.0,
        width=330,
    )
    rerender(threshold)
    return column(heading("4 · Attention pattern"), kind, patterns), column(threshold, matrix_view(page))


def matrix_view(page: dict):
    """4b. The picked head's attention matrix (its entries below the threshold hidden)."""
    colours = LinearColorMapper(palette="Viridis256", low=0, nan_color=(0, 0, 0, 0))
    tokens = page["n_tokens"]
    matrix = plot(
        "Attention matrix",
        (420, 400),
        "matrix_figure",
        tools="hover",
        x_axis_label="key token",
        y_axis_label="query token",
        x_range=Range1d(0, tokens),
        y_range=Range1d(tokens, 0),
        tooltips=[("attention", "@image")],
    )
    matrix.image(
        image="image",
        x=0,
        y=0,
        dw="dw",
        dh="dh",
        color_mapper=colours,
        source=empty_source("matrix_source", "image", "dw", "dh"),
    )
    matrix.add_layout(ColorBar(color_mapper=colours, width=10), "right")
    return matrix


def patch_cells(rows: int, cols: int) -> ColumnDataSource:
    """One cell per patch over the image, which the controller colours with the overlay's values."""
    xs, ys = grid_xy((rows, cols))
    patches = list(range(rows * cols))
    columns = dict(left=xs.tolist(), right=(xs + 1).tolist(), top=ys.tolist(), bottom=(ys + 1).tolist(), patch=patches)
    initial = {"raw": 0.0, "value": 0.0, "alpha": 0.0, "line": 0.3}
    return ColumnDataSource(
        columns | {name: [value] * len(patches) for name, value in initial.items()}, name=named("patch_source")
    )


def picture_view(page: dict):
    """5. The image and its patch grid, with what the overlay shows of the clicked patch."""
    rows, cols = page["grid"]
    overlay = Select(
        name=named("overlay"), title="Show over the image:", value=OVERLAYS[0], options=list(OVERLAYS), width=160
    )
    choices = [
        Select(name=named(name), title=title, value=page[key][0] if page[key] else "", options=page[key], width=width)
        for name, title, key, width in (
            ("alpha", "AWD α:", "alphas", 90),
            ("beta", "DIP β:", "betas", 90),
            ("field", "Field (α, β):", "fields", 120),
        )
    ]
    for widget in (overlay, *choices):
        rerender(widget)
    picture = plot(
        "Image and patches: click a patch",
        (440, 440),
        "picture_figure",
        tools="tap",
        x_range=Range1d(0, cols),
        y_range=Range1d(rows, 0),
    )
    columns = ("url", "x", "y", "w", "h")
    picture.image_url(*columns, anchor="top_left", source=empty_source("picture_source", *columns))
    colours = LinearColorMapper(palette="Inferno256", low=0, high=1, nan_color=(0, 0, 0, 0))
    patches = patch_cells(rows, cols)
    picture.quad(
        "left",
        "right",
        "top",
        "bottom",
        source=patches,
        fill_color={"field": "value", "transform": colours},
        fill_alpha="alpha",
        line_color="white",
        line_width="line",
        selection_line_color="cyan",
        nonselection_fill_alpha="alpha",
        selection_fill_alpha="alpha",
    )
    picture.add_tools(HoverTool(tooltips=[("patch", "@patch"), ("value", "@raw")]))
    picture.axis.visible = False
    tap("patch", patches)
    picture.add_layout(ColorBar(color_mapper=colours, width=10), "right")
    picture.select_one(TapTool).behavior = "select"
    return column(heading("5 · Image and patches"), row(overlay, *choices), picture)


def explorer_html(page: dict, title: str) -> str:
    """The page: the five views laid out, Bokeh's scripts and the controller inlined."""
    status = Div(name=named("status"), text="loading…", width=1200)
    search = TextInput(name=named("search"), title="Image id (Enter):", width=160)
    search.js_on_change("value", CustomJS(args={"w": search}, code="PatchExplorer.onSearch(w.value)"))
    modes, top5 = pruning_views(page)
    patterns, matrix = pattern_views(page)
    layout = column(
        Div(text=f"<h2 style='margin:0'>{title}</h2>"),
        row(search, status),
        row(column(heading("1 · Image overview"), overview_view(page)), picture_view(page), patterns),
        heading("2 · Head importance (blue: this image; grey: mean ± std over images). Click a head."),
        row(*importance_views(page)),
        row(modes, top5, matrix),
        heading("3 · Attention strength"),
        row(*strength_views()),
    )
    template = FILE.environment.from_string(PAGE_TEMPLATE)  # Bokeh's own page, extended
    page_json = json.dumps(page | {"names": list(MODEL_NAMES)}, separators=(",", ":"))
    variables = {"page_json": Markup(page_json), "controller": Markup(CONTROLLER.read_text())}
    return file_html(layout, resources=INLINE, title=title, template=template, template_variables=variables)
