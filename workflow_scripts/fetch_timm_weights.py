"""Rule fetch_timm_weights (local): a timm model's pretrained weights from the hub, as safetensors."""

from patchinteract.models import save_weights
from patchinteract.workflow import build_model, logged_to

with logged_to(snakemake.log[0]) as log:
    experiment = snakemake.wildcards.experiment
    settings = snakemake.config["experiments"][experiment]
    # The hub's own head is kept; load_baseline checks it against the dataset's classes.
    model = build_model(snakemake.config, experiment, num_classes=None, pretrained=True)
    save_weights(model, snakemake.output.weights)
    log.info(
        "saved timm weights of %s (%d classes) to %s", settings["model"], model.num_classes, snakemake.output.weights
    )
