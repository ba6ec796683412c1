"""The training jobs, on every rank: the baseline's training, one retrained branch and one MAE
pre-training run (DDP)."""

from __future__ import annotations

import pandas as pd
import zarr

from patchinteract.analyses.semantics.guided import MaskSchedule
from patchinteract.analyses.semantics.mae import MaskedAutoencoder
from patchinteract.analyses.semantics.mae_pretraining import EncoderMonitor, PretrainingSamples
from patchinteract.analyses.semantics.ranking import patch_scores
from patchinteract.analyses.semantics.semantics_store import read_keypoints
from patchinteract.data.manifest import split_dataset
from patchinteract.models.transforms import eval_dataset, train_transform, uint8_eval_transform
from patchinteract.models.vit import patch_grid
from patchinteract.models.weights import save_weights
from patchinteract.ranks import Ranks, rank_log, share_threads
from patchinteract.records import model_record, write_json
from patchinteract.stores.chunked import store_folder
from patchinteract.training.branch_kinds import branch_kind
from patchinteract.training.loop import Recipe, reconstruction
from patchinteract.training.retraining import BranchSamples, retrain_branch
from patchinteract.training.runs import StartingWeights, TrainingRun


def run_of_job(job: dict, weights: str | None = None) -> TrainingRun:
    """The job's training run; the trained ViT's weights go to ``weights`` (default: the output weights)."""
    params = job["params"]
    return TrainingRun(
        params["model"],
        job["input"]["manifest"],
        Recipe.from_config(params["recipe"]),
        params["seed"],
        params["execution"],
        params["checkpoint"],
        params["config_hash"],
        weights or job["output"]["weights"],
    )


def train_baseline_job(job: dict) -> None:
    """Rule train_baseline: train the experiment's baseline ViT on the train split."""
    with rank_log(job["log"]) as log:
        share_threads(job["threads"])
        run = run_of_job(job)

        vit = run.build_vit(StartingWeights(job["input"].get("init")))
        transform = train_transform(vit, run.recipe.crop_scale)
        images = split_dataset(run.manifest, "train", transform, run.execution.cache_images)
        summary = run.train(vit, vit, BranchSamples(images, {}, patch_grid(vit), run.recipe.hflip))  # the flip only
        if Ranks.current().main:
            write_json(job["output"]["summary"], summary | {"experiment": job["wildcards"]["experiment"]})
            run.discard_checkpoint()
        log.info("trained %d steps in %.0f s", summary["steps"], summary["train_seconds"])


def retrain_job(job: dict) -> None:
    """Rules retrain_<kind> (retrain_vit, retrain_awd, retrain_awd_dip, retrain_winft, ...): retrain one seed
    of a branch and evaluate it (metrics.json, per-image predictions, and the outputs its kind adds)."""
    params, outputs = job["params"], job["output"]
    with rank_log(job["log"]) as log:
        share_threads(job["threads"])
        kind = branch_kind(params["method"], params.get("kind_module"))
        branch = kind(params["settings"], params["alpha"], params["beta"])
        run = run_of_job(job)
        init = StartingWeights(job["input"].get("init"), keep_head=params["init"] == "baseline")
        vit, metrics, predictions, figure = retrain_branch(branch, run, init, params["stores"])
        if not Ranks.current().main:
            return
        branch.write_outputs(outputs, figure, vit)
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


def mask_schedule(job: dict, vit, image_ids) -> MaskSchedule:
    """The masks of a pre-training run: the schedule's settings, and for the guided one the train split's
    keypoint patches (and θ_i with ``order: theta``)."""
    settings, schedule = job["params"]["settings"], job["wildcards"]["schedule"]
    rows, cols = patch_grid(vit)
    options = {"schedule": schedule, "ratio": settings["mask_ratio"], "n_patches": rows * cols}
    if schedule == "guided":
        counts = read_keypoints(store_folder(job["input"]["keypoints"]), image_ids, "the train split")[:]
        options |= {"betas": tuple(settings["betas"]), "rounds_per_step": settings["rounds_per_step"]}
        options["keypoint"] = counts > 0
        if settings["order"] == "theta":
            semantics = zarr.open_group(store_folder(job["input"]["semantics"]), mode="r")
            options["theta"] = patch_scores(semantics["theta_patch"][:], "all")
    return MaskSchedule(**options)


def pretrain_job(job: dict) -> None:
    """Rule pretrain_mae: one MAE pre-training run (schedule random or guided, one seed) of the experiment's
    ViT from random weights, k-NN top-1 after every round, the linear probe at the end."""
    params, outputs = job["params"], job["output"]
    settings = params["settings"]
    with rank_log(job["log"]) as log:
        share_threads(job["threads"])
        run = run_of_job(job, weights=outputs["encoder"])
        vit = run.build_vit(StartingWeights())
        mae = MaskedAutoencoder(vit, settings["decoder"])
        images = split_dataset(run.manifest, "train", uint8_eval_transform(vit), run.execution.cache_images)
        masks = mask_schedule(job, vit, images.image_ids)
        monitor = EncoderMonitor(
            eval_dataset(vit, run.manifest, "train"),
            eval_dataset(vit, run.manifest, "val"),
            masks,
            settings["knn"]["k"],
            settings["knn"]["temperature"],
            Ranks.current().device(run.execution.device),
            {"batch_size": run.execution.batch_size, "workers": run.execution.loader_workers},
        )

        def after_round(mae, round_index):
            record = monitor(mae, round_index)
            log.info(
                "round %d: k-NN top-1 %.2f%% (β %s; %d images took %d patches from the other kind)",
                record["round"],
                record["knn_top1"],
                record["beta"],
                record["fallback_images"],
                record["fallback_patches"],
            )
            return record

        # the evaluation view, flipped with its mask
        samples = PretrainingSamples(images, masks, patch_grid(vit), run.seed, run.recipe.hflip)
        summary = run.train(vit, mae, samples, reconstruction, after_epoch=after_round)
        predictions = monitor.final(mae)
        if not Ranks.current().main:
            return
        curve = pd.DataFrame(summary.pop("epochs"))
        curve.insert(0, "schedule", job["wildcards"]["schedule"])
        curve.insert(1, "seed", run.seed)
        curve.to_parquet(outputs["curve"], index=False)
        predictions.to_parquet(outputs["predictions"], index=False)
        save_weights(mae.decoder, outputs["decoder"])
        metrics = params["record"] | {"config_hash": params["config_hash"], "schedule": job["wildcards"]["schedule"]}
        metrics |= {
            "seed": run.seed,
            "rounds": int(curve["round"].max()),
            "knn_top1": float(curve["knn_top1"].iloc[-1]),
        }
        metrics |= {"probe_top1": 100.0 * float(predictions["probe_correct"].mean()), "n_images": len(predictions)}
        write_json(outputs["metrics"], metrics | summary)
        run.discard_checkpoint()
        log.info(
            "%s: k-NN top-1 %.2f%%, linear probe %.2f%% after %d rounds",
            job["wildcards"]["schedule"],
            metrics["knn_top1"],
            metrics["probe_top1"],
            metrics["rounds"],
        )
