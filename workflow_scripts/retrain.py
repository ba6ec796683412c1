"""Rules retrain_vit, retrain_awd, retrain_awd_dip, retrain_winft: retrain one branch and evaluate it."""

from pathlib import Path

import torch
import zarr

from patchinteract.config import weights_source
from patchinteract.data.manifest import number_of_classes, read_manifest, split_dataset
from patchinteract.models.masked import MaskedViT
from patchinteract.models.transforms import eval_transform, train_transform
from patchinteract.models.vit import build_model, patch_grid, select_device
from patchinteract.models.weights import load_weights, save_weights
from patchinteract.models.winft import WindowFreeViT, evaluate_windows
from patchinteract.records import model_record, write_json
from patchinteract.runtime import logged_to, torch_threads
from patchinteract.stores.chunked import store_folder
from patchinteract.training.branches import MaskedSamples, branch_interactions, load_mask_array, load_masks
from patchinteract.training.evaluation import evaluate_classifier
from patchinteract.training.loop import Recipe, seed_everything, train_classifier

with logged_to(snakemake.log[0]) as log:
    config, experiment, params = snakemake.config, snakemake.wildcards.experiment, snakemake.params
    torch_threads(snakemake.threads)
    seed_everything(config["seed"])
    recipe = Recipe.from_config(config["retrain"]["recipe"])
    device = select_device(config["device"])
    workers = config["data"]["loader_workers"]
    winft = config["winft"]
    table, _root = read_manifest(snakemake.input.manifest)
    vit = build_model(config, experiment, number_of_classes(table))
    if snakemake.input.get("init"):
        from_baseline = weights_source(params.init) == "baseline"
        load_weights(vit, snakemake.input.init, skip_head=not from_baseline)
        log.info("initialised from %s%s", snakemake.input.init, "" if from_baseline else " (fresh head)")
    if params.method == "winft":
        model = WindowFreeViT(vit, mask_mode=winft["mask_mode"], target_kind=winft["target"])
    else:
        model = MaskedViT(vit, cls_in_window=config["retrain"]["cls_in_window"], dip_mode=config["retrain"]["dip_mode"])

    def split_with_masks(split, transform, hflip=False):
        """The split's dataset with the branch's compact masks (or WinFT's ground truth) appended."""
        dataset = split_dataset(snakemake.input.manifest, split, transform)
        if params.method == "winft":
            name = "field_box" if winft["target"] == "box" else "field_members"
            masks = {name: load_mask_array(store_folder(snakemake.input[f"fields_{split}"]), name, dataset.image_ids)}
        else:
            inputs = snakemake.input
            stores = [inputs.get(f"{kind}_{split}") for kind in ("window", "keep")]
            windows, keep = load_masks(*(store and store_folder(store) for store in stores), dataset.image_ids)
            masks = {name: values for name, values in (("window", windows), ("keep", keep)) if values is not None}
        return MaskedSamples(dataset, masks, patch_grid(vit), hflip), masks

    train, _ = split_with_masks("train", train_transform(vit, recipe.crop_scale), recipe.hflip)
    summary = train_classifier(
        model, train, recipe, device, seed=config["seed"], workers=workers, checkpoint=params.checkpoint,
        fingerprint=params.config_hash,  # a checkpoint of other settings is not resumed
        loss_weights=(winft["ce_weight"], winft["bce_weight"]) if params.method == "winft" else (1.0, 1.0),
    )  # fmt: skip
    val, val_masks = split_with_masks("val", eval_transform(vit))
    loader = torch.utils.data.DataLoader(val, batch_size=config["eval"]["batch_size"], num_workers=workers)
    record = model_record(config, experiment, vit)
    if params.method == "winft":  # one pass: accuracy and the predicted windows, no training loss
        metrics = evaluate_windows(model, loader, device, keep_first=winft["figure_images"])
        figure = zarr.open_group(store_folder(snakemake.output.figure), mode="w")
        figure.attrs.update({"grid": list(model.grid), "target": winft["target"]})
        for name, values in metrics.pop("figure").items():
            if values is not None:
                figure.create_array(name, data=values)
    else:
        metrics = evaluate_classifier(model, loader, device)
        windows, keep = val_masks.get("window"), val_masks.get("keep")
        metrics["eo"] = branch_interactions(windows, keep, record["n_patches"])
    metrics |= record | {
        "config_hash": params.config_hash,
        "method": params.method,
        "branch": params.branch,
        "alpha": params.alpha,
        "beta": params.beta,
        "train_seconds": summary["train_seconds"],
        "steps": summary["steps"],
        "resumed_from_step": summary["resumed_from_step"],
    }
    save_weights(vit, snakemake.output.weights)
    write_json(snakemake.output.metrics, metrics)
    Path(params.checkpoint).unlink(missing_ok=True)
    log.info("%s: val top-1 %.2f%%, E_O %.1f, %d steps", params.branch, *(metrics[k] for k in ("top1", "eo", "steps")))
