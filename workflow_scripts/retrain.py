"""Rules retrain_vit, retrain_awd, retrain_awd_dip: retrain one branch under its masks and evaluate it."""

from pathlib import Path

import torch

from patchinteract.config import weights_source
from patchinteract.data import number_of_classes, read_manifest
from patchinteract.masked_vit import MaskedViT
from patchinteract.models import eval_transform, load_weights, save_weights, select_device, train_transform
from patchinteract.retraining import MaskedSamples, branch_interactions, load_masks
from patchinteract.training import Recipe, evaluate_classifier, seed_everything, train_classifier
from patchinteract.workflow import (
    build_model,
    logged_to,
    model_record,
    provenance,
    split_dataset,
    torch_threads,
    write_json,
)

with logged_to(snakemake.log[0]) as log:
    config, experiment, params = snakemake.config, snakemake.wildcards.experiment, snakemake.params
    torch_threads(snakemake.threads)
    seed_everything(config["seed"])
    settings, recipe = config["retrain"], Recipe.from_config(config["retrain"]["recipe"])
    device = select_device(config["device"])
    table, _root = read_manifest(snakemake.input.manifest)
    vit = build_model(config, experiment, number_of_classes(table))
    if snakemake.input.get("init"):
        from_baseline = weights_source(params.init) == "baseline"
        load_weights(vit, snakemake.input.init, skip_head=not from_baseline)
        log.info("initialised from %s%s", snakemake.input.init, "" if from_baseline else " (fresh head)")
    model = MaskedViT(vit, cls_in_window=settings["cls_in_window"], dip_mode=settings["dip_mode"])

    def split_with_masks(split, transform):
        dataset = split_dataset(snakemake.input.manifest, split, transform)
        windows, keep = load_masks(
            snakemake.input.get(f"window_{split}"), snakemake.input.get(f"keep_{split}"), dataset.image_ids
        )
        return MaskedSamples(dataset, [m for m in (windows, keep) if m is not None]), windows, keep

    train, _, _ = split_with_masks("train", train_transform(vit, recipe.crop_scale, recipe.hflip))
    summary = train_classifier(
        model, train, recipe, device, seed=config["seed"], workers=config["data"]["loader_workers"],
        checkpoint=params.checkpoint, fingerprint=provenance(config, experiment)["config_hash"] + params.branch,
    )  # fmt: skip
    val, windows, keep = split_with_masks("val", eval_transform(vit))
    loader = torch.utils.data.DataLoader(
        val, batch_size=config["eval"]["batch_size"], num_workers=config["data"]["loader_workers"]
    )
    metrics = evaluate_classifier(model, loader, device)
    record = model_record(config, experiment, vit)
    metrics |= record | {
        "method": params.method,
        "branch": params.branch,
        "alpha": params.alpha,
        "beta": params.beta,
        "eo": branch_interactions(windows, keep, record["n_patches"]),
        "train_seconds": summary["train_seconds"],
        "steps": summary["steps"],
        "resumed_from_step": summary["resumed_from_step"],
    }
    save_weights(vit, snakemake.output.weights)
    write_json(snakemake.output.metrics, metrics)
    Path(params.checkpoint).unlink(missing_ok=True)
    log.info("%s: val top-1 %.2f%%, E_O %.1f, %d steps", params.branch, *(metrics[k] for k in ("top1", "eo", "steps")))
