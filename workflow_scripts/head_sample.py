"""Rule head_sample: the images the head analyses run on (heads.sample), and which classes they are."""

import pandas as pd

from patchinteract.analyses.heads.sample import analysed_images
from patchinteract.data.manifest import read_manifest
from patchinteract.runtime import logged_to

with logged_to(snakemake.log[0]) as log:
    params, split = snakemake.params, snakemake.wildcards.split
    split_table, _ = read_manifest(snakemake.input.manifest, split)
    predictions = pd.read_parquet(snakemake.input.predictions)
    images, classes = analysed_images(split_table, predictions, params.sample, params.images, params.seed, split)
    images.to_parquet(snakemake.output.images, index=False)
    classes.to_parquet(snakemake.output.classes, index=False)
    log.info("%d images of %d classes (%s)", len(images), len(classes), params.sample["kind"])
    for row in classes.itertuples():
        log.info(
            "class %d (%s): %s, baseline top-1 %.2f %%, %d images", row[1], row.name, row.group, row.top1, row.images
        )
