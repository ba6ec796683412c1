"""Rule train_baseline: train the experiment's baseline ViT on the train split."""

from pathlib import Path

from patchinteract.data.manifest import number_of_classes, read_manifest, split_dataset
from patchinteract.models.transforms import train_transform
from patchinteract.models.vit import build_model, patch_grid, select_device
from patchinteract.models.weights import load_weights, save_weights
from patchinteract.records import write_json
from patchinteract.runtime import logged_to, torch_threads
from patchinteract.training.branches import MaskedSamples
from patchinteract.training.loop import Recipe, seed_everything, train_classifier

with logged_to(snakemake.log[0]) as log:
    config, experiment = snakemake.config, snakemake.wildcards.experiment
    torch_threads(snakemake.threads)
    seed_everything(config["seed"])
    recipe = Recipe.from_config(config["experiments"][experiment]["train_baseline"])
    table, _root = read_manifest(snakemake.input.manifest)
    model = build_model(config, experiment, number_of_classes(table))
    if snakemake.input.get("init"):
        load_weights(model, snakemake.input.init, skip_head=True)
        log.info("initialised from %s (fresh head)", snakemake.input.init)
    images = split_dataset(snakemake.input.manifest, "train", train_transform(model, recipe.crop_scale))
    dataset = MaskedSamples(images, {}, patch_grid(model), recipe.hflip)  # no masks: the flip only
    summary = train_classifier(
        model, dataset, recipe, select_device(config["device"]), seed=config["seed"],
        workers=config["data"]["loader_workers"], checkpoint=snakemake.params.checkpoint,
        fingerprint=snakemake.params.config_hash,
    )  # fmt: skip
    save_weights(model, snakemake.output.weights)
    write_json(snakemake.output.summary, summary | {"experiment": experiment, "train_images": len(dataset)})
    Path(snakemake.params.checkpoint).unlink(missing_ok=True)
    log.info("trained %d steps in %.0f s", summary["steps"], summary["train_seconds"])
