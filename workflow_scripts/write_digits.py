"""Rule write_digits: scikit-learn's digits as an ImageFolder of PNGs."""

from pathlib import Path

from patchinteract.data.sources import write_digits_imagefolder
from patchinteract.runtime import logged_to

with logged_to(snakemake.log[0]) as log:
    settings = snakemake.params.dataset
    table = write_digits_imagefolder(
        Path(snakemake.output.images),
        settings["image_size"],
        settings["val_fraction"],
        snakemake.params.seed,
        per_class=settings.get("per_class"),
    )
    log.info("wrote %d digits: %s", len(table), table["split"].value_counts().to_dict())
