"""Rule train_baseline: train the experiment's baseline ViT on the train split."""

from patchinteract.data.manifest import split_dataset
from patchinteract.models.transforms import train_transform
from patchinteract.models.vit import patch_grid
from patchinteract.records import write_json
from patchinteract.runtime import logged_to, torch_threads
from patchinteract.training.branches import BranchSamples
from patchinteract.training.loop import Recipe
from patchinteract.training.runs import TrainingInit, TrainingRun

with logged_to(snakemake.log[0]) as log:
    params = snakemake.params
    torch_threads(snakemake.threads)
    recipe = Recipe.from_config(params.recipe)
    run = TrainingRun(
        params.model,
        snakemake.input.manifest,
        recipe,
        params.seed,
        params.execution,
        params.checkpoint,
        params.config_hash,
        snakemake.output.weights,
    )

    def train_samples(vit):  # no masks: the flip only
        transform = train_transform(vit, recipe.crop_scale)
        images = split_dataset(run.manifest, "train", transform, run.execution.cache_images)
        return BranchSamples(images, {}, patch_grid(vit), recipe.hflip)

    _vit, _model, summary = run.train(TrainingInit(snakemake.input.get("init")), train_samples)
    write_json(snakemake.output.summary, summary | {"experiment": snakemake.wildcards.experiment})
    run.discard_checkpoint()
    log.info("trained %d steps in %.0f s", summary["steps"], summary["train_seconds"])
