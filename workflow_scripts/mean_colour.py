"""Rule dataset_mean_colour: the data set's mean colour over its train split (semantics.masking.fill)."""

from patchinteract.data.manifest import mean_colour
from patchinteract.records import write_json
from patchinteract.runtime import logged_to

with logged_to(snakemake.log[0]) as log:
    colour = mean_colour(snakemake.input.manifest, "train", threads=snakemake.threads)
    write_json(snakemake.output.colour, {"split": "train", "mean": [round(float(c), 6) for c in colour]})
    log.info("mean colour of the train split (RGB, 0-1): %s", colour.round(4).tolist())
