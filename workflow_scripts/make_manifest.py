"""Rule dataset_manifest: list, check and order every image of a dataset."""

from pathlib import Path

from patchinteract.data.manifest import (
    check_images,
    finalize_manifest,
    read_cub_layout,
    scan_imagefolder,
    write_manifest,
)
from patchinteract.runtime import logged_to

with logged_to(snakemake.log[0]) as log:
    settings = snakemake.params.dataset
    if settings["source"] == "imagefolder":
        root = Path(settings["path"])
    else:
        root = Path(snakemake.input.images) / settings["root"]
    if settings["layout"] == "cub" and settings["source"] == "url":
        table = read_cub_layout(root)
    else:
        table = scan_imagefolder(root, settings["splits"], settings.get("expected_counts"), settings.get("classes"))
    table = check_images(table, root, snakemake.params.on_corrupt, threads=snakemake.threads)
    manifest = finalize_manifest(table)
    write_manifest(manifest, Path(snakemake.output.manifest), root)
    usable = manifest[manifest["error"].isna()]
    log.info(
        "%d images (%d skipped), %d classes, splits %s",
        len(usable),
        len(manifest) - len(usable),
        usable["label"].nunique(),
        usable["split"].value_counts().to_dict(),
    )
