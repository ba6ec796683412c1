"""Rule explorer: the offline page of coordinated views over an experiment's analyses (docs/explorer.md)."""

from pathlib import Path

from patchinteract.report.explorer import ExplorerStores, page_data, write_explorer
from patchinteract.runtime import logged_to
from patchinteract.stores.chunked import store_folder

with logged_to(snakemake.log[0]) as log:
    inputs, params = snakemake.input, snakemake.params
    stores = ExplorerStores(
        manifest=inputs.manifest,
        attention=str(store_folder(inputs.attention)),
        interaction=str(store_folder(inputs.interaction)),
        windows={alpha: str(store_folder(inputs[f"window_{alpha}"])) for alpha in params.alphas},
        keeps={beta: str(store_folder(inputs[f"keep_{beta}"])) for beta in params.betas},
        fields={field: str(store_folder(inputs[f"fields_{field}"])) for field in params.fields},
        head_importance=inputs.head_importance,
        image_overview=inputs.image_overview,
        head_strength=inputs.head_strength,
        attention_strength=inputs.attention_strength,
        attention_patterns=inputs.attention_patterns,
        head_summary=inputs.head_summary,
        keypoints=str(store_folder(inputs.keypoints)) if "keypoints" in inputs.keys() else None,
        semantics=str(store_folder(inputs.semantics)) if "semantics" in inputs.keys() else None,
        class_names=inputs.class_names if "class_names" in inputs.keys() else None,
    )
    page, payloads = page_data(stores, params.images, params.attention_layers, params.image_size)
    folder = Path(snakemake.output.page).parent
    index = write_explorer(folder, page, payloads, f"patchinteract explorer · {snakemake.wildcards.experiment}")
    size = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
    log.info(
        "wrote %s: %d images, %.1f MB in all (page %.1f MB)",
        index,
        len(payloads),
        size / 1e6,
        index.stat().st_size / 1e6,
    )
