"""Rules fetch_timm_weights and fetch_init_weights (local): a timm model's hub weights as safetensors."""

from patchinteract.models.vit import create_vit
from patchinteract.models.weights import save_weights
from patchinteract.runtime import logged_to

with logged_to(snakemake.log[0]) as log:
    settings, name = snakemake.params.model, snakemake.params.model_name
    # Built at the experiment's sizes: timm resamples the position embedding (and patch
    # embedding) of the hub weights to them. The hub's own head is kept; consumers
    # re-initialise it or check it against the dataset's classes.
    model = create_vit(
        name,
        settings["img_size"],
        settings["patch_size"],
        num_classes=None,
        model_args=settings.get("model_args"),
        pretrained=True,
    )
    save_weights(model, snakemake.output.weights)
    log.info("saved hub weights of %s (%d classes) to %s", name, model.num_classes, snakemake.output.weights)
