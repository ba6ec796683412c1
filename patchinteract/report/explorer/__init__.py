"""The explorer: one offline page of coordinated views over every analysis of an experiment (Li et al.'s
visual analytics system, Sec. 5 / Fig. 1, with Ma et al.'s maps and Wu et al.'s keypoints).

A researcher picks an image (image overview: the t-SNE of images by head importance), then a head
(head importance, attention strength, attention patterns), then a patch (image and patches), and
every view shows that selection. The page is Bokeh with its scripts inlined (no server, no network)
and the views are driven by ``controller.js``, inlined beside them. What the page shows of all images
(the overview, the head-pattern layout, each head's entropy over images) is embedded in it; what it
shows of one image (its attention, U, masks, head importance, keypoints) is one small script per
image in ``data/``, loaded when the image is picked: the page opens as fast for 10 images as for
1,000, and the folder can be copied as a whole. Arrays travel as base64 of little-endian bytes;
attention and U rows as uint8 scaled by the row's maximum (error at most max / 510 per entry).

Three parts: :mod:`.data` gathers what the page shows from the stores and tables, :mod:`.page` lays the
views out as named Bokeh models, ``controller.js`` drives them.
"""

from __future__ import annotations

from pathlib import Path

from patchinteract.report.explorer.data import (
    ExplorerStores,
    dequantised_rows,
    encode_array,
    explorer_images,
    page_data,
    quantised_rows,
    write_payloads,
)

__all__ = [
    "ExplorerStores",
    "dequantised_rows",
    "encode_array",
    "explorer_images",
    "page_data",
    "quantised_rows",
    "write_explorer",
]


def write_explorer(folder: Path | str, page: dict, payloads: dict[int, dict], title: str) -> Path:
    """``folder``/index.html and ``folder``/data/<image_id>.js; returns the page's path."""
    from patchinteract.report.explorer.page import explorer_html  # Bokeh: only where a page is written

    folder = Path(folder)
    write_payloads(folder, payloads)
    index = folder / "index.html"
    index.write_text(explorer_html(page, title))
    return index
