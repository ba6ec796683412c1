"""The training jobs, on every rank: the baseline's training and one retrained branch (DDP)."""

from __future__ import annotations

from patchinteract.data.manifest import split_dataset
from patchinteract.models.transforms import train_transform
from patchinteract.models.vit import patch_grid
from patchinteract.ranks import Ranks, rank_log, share_threads
from patchinteract.records import model_record, write_json
from patchinteract.stores.chunked import store_folder, write_arrays
from patchinteract.stores.specs import winft_figure_specs
from patchinteract.training.branches import BranchSamples, branch_of, retrain_branch
from patchinteract.training.loop import Recipe
from patchinteract.training.runs import TrainingInit, TrainingRun


def training_run(job: dict) -> TrainingRun:
    params = job["params"]
    return TrainingRun(
        params["model"],
        job["input"]["manifest"],
        Recipe.from_config(params["recipe"]),
        params["seed"],
        params["execution"],
        params["checkpoint"],
        params["config_hash"],
        job["output"]["weights"],
    )


def train_baseline_job(job: dict) -> None:
    """Rule train_baseline: train the experiment's baseline ViT on the train split."""
    with rank_log(job["log"]) as log:
        share_threads(job["threads"])
        run = training_run(job)

        def train_samples(vit):  # no masks: the flip only
            transform = train_transform(vit, run.recipe.crop_scale)
            images = split_dataset(run.manifest, "train", transform, run.execution.cache_images)
            return BranchSamples(images, {}, patch_grid(vit), run.recipe.hflip)

        _vit, _model, summary = run.train(TrainingInit(job["input"].get("init")), train_samples)
        if Ranks.current().main:
            write_json(job["output"]["summary"], summary | {"experiment": job["wildcards"]["experiment"]})
            run.discard_checkpoint()
        log.info("trained %d steps in %.0f s", summary["steps"], summary["train_seconds"])


def retrain_job(job: dict) -> None:
    """Rules retrain_vit, retrain_awd, retrain_awd_dip, retrain_winft: retrain one seed of a branch and
    evaluate it (metrics.json and per-image predictions)."""
    params, outputs = job["params"], job["output"]
    with rank_log(job["log"]) as log:
        share_threads(job["threads"])
        branch = branch_of(params["method"], params["settings"], params["alpha"], params["beta"])
        run = training_run(job)
        init = TrainingInit(job["input"].get("init"), keep_head=params["init"] == "baseline")
        vit, metrics, predictions, figure = retrain_branch(branch, run, init, params["stores"])
        if not Ranks.current().main:
            return
        if figure is not None:  # WinFT: its predicted windows of the first val images (Fig. 10)
            attributes = {"grid": list(patch_grid(vit)), "target": params["settings"]["target"]}
            specs = winft_figure_specs(len(vit.blocks), figure["target"].shape[-1])
            write_arrays(store_folder(outputs["figure"]), figure, specs, attributes)
        # seed: the retraining seed (the record's is the experiment's, which made the baseline and masks)
        branch_fields = {key: params[key] for key in ("config_hash", "method", "branch", "alpha", "beta", "seed")}
        metrics |= model_record(params["record"], vit) | branch_fields
        predictions.to_parquet(outputs["predictions"], index=False)
        write_json(outputs["metrics"], metrics)
        run.discard_checkpoint()
        log.info(
            "%s: val top-1 %.2f%%, E_O %.1f, %d steps",
            params["branch"],
            metrics["top1"],
            metrics["eo"],
            metrics["steps"],
        )
