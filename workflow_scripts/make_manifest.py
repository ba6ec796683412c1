"""Rule dataset_manifest: list, check and order every image of a dataset."""

from pathlib import Path

from patchinteract.data.manifest import (
    check_images,
    finalize_manifest,
    left_out_summary,
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
    left_out = {}
    if settings["layout"] == "cub" and settings["source"] == "url":
        table = read_cub_layout(root)
    else:
        table = scan_imagefolder(
            root, settings["splits"], settings.get("expected_counts"), settings.get("classes"), left_out
        )
    table = check_images(table, root, snakemake.params.on_corrupt, threads=snakemake.threads)
    manifest = finalize_manifest(table)
    write_manifest(manifest, Path(snakemake.output.manifest), root)
    usable = manifest[manifest["error"].isna()]
    skipped = sum(map(len, left_out.values())) + len(manifest) - len(usable)
    log.info(
        "%d images (%d skipped), %d classes, splits %s",
        len(usable),
        skipped,
        usable["label"].nunique(),
        usable["split"].value_counts().to_dict(),
    )
    if skipped:
        log.warning("files under %s not used: %s", root, left_out_summary(left_out, manifest))
