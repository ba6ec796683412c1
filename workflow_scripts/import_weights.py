"""Rule import_weights: a local checkpoint checked against the configured model and saved as safetensors."""

from patchinteract.data.manifest import number_of_classes, read_manifest
from patchinteract.models.vit import build_model
from patchinteract.models.weights import load_weights, save_weights
from patchinteract.runtime import logged_to

with logged_to(snakemake.log[0]) as log:
    experiment = snakemake.wildcards.experiment
    table, _root = read_manifest(snakemake.input.manifest)
    model = build_model(snakemake.params.model, number_of_classes(table))
    for note in load_weights(model, snakemake.input.checkpoint):
        log.info("%s: %s", snakemake.input.checkpoint, note)
    save_weights(model, snakemake.output.weights)
    log.info("imported %s for %s", snakemake.input.checkpoint, experiment)
