"""The inference jobs, on every rank: each rank runs the baseline over its consecutive block of the images
(evaluation, head importance, masking by θ; gathered in the order of one process) or writes its block of a
store's pending chunks (attention, streamed U, head attention, semantics). Rank 0 writes the outputs."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import zarr

from patchinteract.analyses.heads.head_attention_store import (
    compute_head_store,
    strength_tables,
    write_head_store_streaming,
)
from patchinteract.analyses.heads.pruning import head_importance
from patchinteract.analyses.heads.sample import explorer_images, sample_positions
from patchinteract.analyses.semantics.masking import masking_accuracy, normalised_colour
from patchinteract.analyses.semantics.ranking import check_ratios, masking_rankings, patch_scores
from patchinteract.analyses.semantics.semantics_store import (
    compute_semantics_store,
    theta_table,
    write_semantics_store_streaming,
)
from patchinteract.attention.extraction import write_attention_store, write_interaction_store_streaming
from patchinteract.models.transforms import data_config, eval_dataset
from patchinteract.models.vit import load_baseline
from patchinteract.ranks import Ranks, rank_block, rank_log, share_threads
from patchinteract.records import model_record, store_record, write_json
from patchinteract.stores.chunked import store_folder
from patchinteract.training.evaluation import evaluate_classifier


class InferenceJob:
    """One inference job on this rank: its settings, the baseline and its data sets."""

    def __init__(self, job: dict, split: str | None = None):
        self.params, self.input, self.output = job["params"], job["input"], job["output"]
        self.execution = self.params["execution"]
        self.split = split or job["wildcards"]["split"]  # the split wildcard, or the job's own
        self.device = Ranks.current().device(self.execution.device)
        share_threads(job["threads"])

    def baseline(self):
        return load_baseline(self.params["model"], self.input["weights"], self.input["manifest"])

    def dataset(self, model):
        """The job's split as the baseline's evaluation reads it."""
        return eval_dataset(model, self.input["manifest"], self.split)

    def sample(self, model):
        """The head analyses' sample of the split, and its positions in the split."""
        images = sample_positions(self.input["sample"])
        return torch.utils.data.Subset(self.dataset(model), images.tolist()), images

    def loader_settings(self) -> dict:
        return {"batch_size": self.execution.batch_size, "workers": self.execution.loader_workers}

    def store_record(self) -> dict:
        return store_record(self.params["record"], self.split)


def evaluate_baseline_job(job: dict) -> None:
    """Rule evaluate_baseline: top-1/top-5 of the baseline on the val split, as JSON, and its per-image
    predictions."""
    with rank_log(job["log"]) as log:
        run = InferenceJob(job, split="val")
        model = run.baseline()
        loader = torch.utils.data.DataLoader(
            rank_block(run.dataset(model)),
            batch_size=run.execution.batch_size,
            num_workers=run.execution.loader_workers,
        )
        metrics, predictions = evaluate_classifier(model, loader, run.device)
        if not Ranks.current().main:
            return
        metrics |= model_record(run.params["record"], model) | {"method": "baseline"}
        predictions.to_parquet(run.output["predictions"], index=False)
        write_json(run.output["metrics"], metrics)
        log.info("val top-1 %.2f%% on %d images", metrics["top1"], metrics["n_images"])


def attention_job(job: dict) -> None:
    """Rules attention_store, interaction_streaming, attention_figure_store and explorer_attention_store:
    run the baseline over a split and keep its attention (Zarr), or with attention.store: none only U and
    dip_score, and the attention of the first attention.figure_images images (for Fig. 3) and of the
    explorer's images."""
    with rank_log(job["log"]) as log:
        run = InferenceJob(job)
        params = run.params
        model = run.baseline()
        dataset = run.dataset(model)
        if params["first_images"]:  # the figure images only (attention.store: none)
            dataset = torch.utils.data.Subset(dataset, range(min(params["first_images"], len(dataset))))
        if params.get("explorer_images"):  # the explorer's: the first of the head analyses' images
            indices = explorer_images(sample_positions(run.input["sample"]), params["explorer_images"])
            dataset = torch.utils.data.Subset(dataset, indices.tolist())
        options = {}
        if params["keep_attention"]:
            write, options["chunk_setting"] = write_attention_store, params["images_per_chunk"]
            options["mantissa_bits"] = params.get("mantissa_bits")  # the full store's setting; figure stores: lossless
        else:
            write = write_interaction_store_streaming
        path = write(
            model,
            dataset,
            store_folder(run.output["store"]),
            device=run.device,
            compression_level=params["compression_level"],
            **run.loader_settings(),
            **options,
            attributes=run.store_record(),
        )
        log.info("wrote %s", path)


def head_attention_job(job: dict) -> None:
    """Rules head_attention_store and head_attention_streaming: the head-attention store (Li et al.) of the
    head analyses' sample of a split, from the attention store with Dask (one rank) or streamed during
    inference, and its strength tables."""
    with rank_log(job["log"]) as log:
        run = InferenceJob(job)
        out = store_folder(run.output["store"])
        if "attention" in run.input:
            images = sample_positions(run.input["sample"])
            compute_head_store(
                store_folder(run.input["attention"]),
                out,
                images,
                run.params["top_share"],
                compression_level=run.params["compression_level"],
                dask=run.execution.dask_settings(run.params["dask_logs"]),
            )
        else:
            model = run.baseline()
            sample, images = run.sample(model)
            write_head_store_streaming(
                model,
                sample,
                out,
                run.params["top_share"],
                device=run.device,
                **run.loader_settings(),
                compression_level=run.params["compression_level"],
                attributes=run.store_record(),
            )
        if not Ranks.current().main:
            return
        per_hop, per_head = strength_tables(out)
        per_hop.to_parquet(run.output["strength"], index=False)
        per_head.to_parquet(run.output["head_strength"], index=False)
        log.info(
            "%d images: mean entropy per layer %s",
            len(images),
            per_head.groupby("layer")["entropy"].mean().round(3).tolist(),
        )


def head_importance_job(job: dict) -> None:
    """Rule head_importance: every head of the baseline pruned in six modes (Li et al. eq. 3-6) on the head
    analyses' sample of a split (heads.sample)."""
    with rank_log(job["log"]) as log:
        run = InferenceJob(job)
        model = run.baseline()
        sample, _ = run.sample(model)
        rows, per_image = head_importance(
            model,
            sample,
            device=run.device,
            batch_images=run.execution.batch_size,
            workers=run.execution.loader_workers,
            variants_per_pass=run.params["variants_per_pass"],
            activation=run.params["activation"],
        )
        if not Ranks.current().main:
            return
        rows.to_parquet(run.output["rows"], index=False)
        per_image.to_parquet(run.output["images"], index=False)
        strongest = rows[rows["mode"] == 1].groupby(["layer", "head"])["prob"].mean().nlargest(3)
        log.info(
            "%d images, %d rows; largest mean I_prob: %s",
            len(per_image),
            len(rows),
            ", ".join(f"L{layer}H{head} {value:.4f}" for (layer, head), value in strongest.items()),
        )


def semantics_job(job: dict) -> None:
    """Rules semantics_store and semantics_streaming: θ_KK, θ_NK, the focus index and θ_i per patch (Wu et
    al. eq. 2-5) of every image of a split, from the attention store with Dask (one rank) or streamed during
    inference, and the long table theta.parquet."""
    with rank_log(job["log"]) as log:
        run = InferenceJob(job)
        params = run.params
        settings = {"gamma": params["gamma"], "weighting": params["weighting"]}
        settings["compression_level"] = params["compression_level"]
        out, keypoints = store_folder(run.output["store"]), store_folder(run.input["keypoints"])
        if "attention" in run.input:
            dask = run.execution.dask_settings(params["dask_logs"])
            compute_semantics_store(
                store_folder(run.input["attention"]), keypoints, out, **settings, dask_settings=dask
            )
        else:
            model = run.baseline()
            write_semantics_store_streaming(
                model,
                run.dataset(model),
                keypoints,
                out,
                **settings,
                device=run.device,
                **run.loader_settings(),
                attributes=run.store_record(),
            )
        if not Ranks.current().main:
            return
        theta = theta_table(out)
        theta.to_parquet(run.output["theta"], index=False)
        per_layer = theta.groupby("layer")[["theta_kk", "theta_nk", "focus_index"]].mean().round(3)
        log.info("%d images; per layer:\n%s", theta["image_id"].nunique(), per_layer.to_string())


def theta_masking_job(job: dict) -> None:
    """Rule theta_masking: the baseline's val top-1 with the top, bottom or random r of the patches masked,
    ranked by θ_i averaged over heads and layers (Wu et al. Sec. 5.1, Fig. 8)."""
    with rank_log(job["log"]) as log:
        run = InferenceJob(job, split="val")
        masking = run.params["masking"]
        ratios = check_ratios(masking["ratios"])
        semantics = zarr.open_group(store_folder(run.input["semantics"]), mode="r")
        scores = patch_scores(semantics["theta_patch"][:], masking["layers"])  # checks the layers before any forward
        model = run.baseline()
        dataset = run.dataset(model)
        if list(dataset.image_ids) != semantics["image_id"][:].tolist():
            raise ValueError(f"{run.input['semantics']} is not of the manifest's val images: rebuild it")
        fill = None  # zeroed patches take the normalisation mean, or the data set's mean colour
        if "mean_colour" in run.input:
            normalisation = data_config(model)
            colour = json.loads(Path(run.input["mean_colour"]).read_text())["mean"]
            fill = normalised_colour(colour, normalisation["mean"], normalisation["std"])
            log.info("masked patches take the data set's mean colour %s (normalised %s)", colour, fill.tolist())
        # batches of the baseline's evaluation (evaluate_baseline), so that r = 0 is its top-1 exactly
        table, predictions = masking_accuracy(
            model,
            dataset,
            masking_rankings(scores, masking["random_seeds"], run.params["seed"]),
            ratios,
            masking["mode"],
            run.device,
            fill,
            **run.loader_settings(),
        )
        if not Ranks.current().main:
            return
        table.to_parquet(run.output["table"], index=False)
        predictions.to_parquet(run.output["predictions"], index=False)
        log.info("\n%s", table.round(2).to_string(index=False))
