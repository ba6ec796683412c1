"""Rules retrain_vit, retrain_awd, retrain_awd_dip, retrain_winft: retrain one seed of a branch and evaluate
it (metrics.json and per-image predictions)."""

from patchinteract.models.vit import patch_grid
from patchinteract.records import model_record, write_json
from patchinteract.runtime import logged_to, torch_threads
from patchinteract.stores.chunked import store_folder, write_arrays
from patchinteract.stores.specs import winft_figure_specs
from patchinteract.training.branches import branch_of, retrain_branch
from patchinteract.training.loop import Recipe
from patchinteract.training.runs import TrainingInit, TrainingRun

with logged_to(snakemake.log[0]) as log:
    params, inputs = snakemake.params, snakemake.input
    torch_threads(snakemake.threads)
    branch = branch_of(params.method, params.settings, params.alpha, params.beta)
    run = TrainingRun(
        params.model,
        inputs.manifest,
        Recipe.from_config(params.recipe),
        params.seed,
        params.execution,
        params.checkpoint,
        params.config_hash,
        snakemake.output.weights,
    )
    init = TrainingInit(inputs.get("init"), keep_head=params.init == "baseline")
    vit, metrics, predictions, figure = retrain_branch(branch, run, init, params.stores)
    if figure is not None:  # WinFT: its predicted windows of the first val images (Fig. 10)
        attributes = {"grid": list(patch_grid(vit)), "target": params.settings["target"]}
        specs = winft_figure_specs(len(vit.blocks), figure["target"].shape[-1])
        write_arrays(store_folder(snakemake.output.figure), figure, specs, attributes)
    # seed: the retraining seed (the record's is the experiment's, which made the baseline and masks)
    branch_fields = {key: params[key] for key in ("config_hash", "method", "branch", "alpha", "beta", "seed")}
    metrics |= model_record(params.record, vit) | branch_fields
    predictions.to_parquet(snakemake.output.predictions, index=False)
    write_json(snakemake.output.metrics, metrics)
    run.discard_checkpoint()
    log.info("%s: val top-1 %.2f%%, E_O %.1f, %d steps", params.branch, *(metrics[k] for k in ("top1", "eo", "steps")))
