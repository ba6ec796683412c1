"""Rule theta_masking: the baseline's val top-1 with the top, bottom or random r of the patches masked,
ranked by θ_i averaged over heads and layers (Wu et al. Sec. 5.1, Fig. 8)."""

import json
from pathlib import Path

import torch
import zarr

from patchinteract.analyses.semantics.masking import masking_accuracy, normalised_colour
from patchinteract.analyses.semantics.ranking import check_ratios, masking_rankings, patch_scores
from patchinteract.models.transforms import data_config, eval_dataset
from patchinteract.models.vit import load_baseline
from patchinteract.runtime import logged_to, select_device, torch_threads
from patchinteract.stores.chunked import store_folder

with logged_to(snakemake.log[0]) as log:
    params, execution, masking = snakemake.params, snakemake.params.execution, snakemake.params.masking
    ratios = check_ratios(masking["ratios"])
    semantics = zarr.open_group(store_folder(snakemake.input.semantics), mode="r")
    scores = patch_scores(semantics["theta_patch"][:], masking["layers"])  # checks the layers before any forward
    torch_threads(snakemake.threads)
    model = load_baseline(params.model, snakemake.input.weights, snakemake.input.manifest)
    dataset = eval_dataset(model, snakemake.input.manifest, "val")
    if list(dataset.image_ids) != semantics["image_id"][:].tolist():
        raise ValueError(f"{snakemake.input.semantics} is not of the manifest's val images: rebuild it")
    # the baseline's evaluation loader (evaluate_baseline), so that r = 0 is its top-1 exactly
    loader = torch.utils.data.DataLoader(dataset, batch_size=execution.batch_size, num_workers=execution.loader_workers)
    fill = None  # zeroed patches take the normalisation mean, or the data set's mean colour
    if "mean_colour" in snakemake.input.keys():
        normalisation = data_config(model)
        colour = json.loads(Path(snakemake.input.mean_colour).read_text())["mean"]
        fill = normalised_colour(colour, normalisation["mean"], normalisation["std"])
        log.info("masked patches take the data set's mean colour %s (normalised %s)", colour, fill.tolist())
    table, predictions = masking_accuracy(
        model,
        loader,
        masking_rankings(scores, masking["random_seeds"], params.seed),
        ratios,
        masking["mode"],
        select_device(execution.device),
        fill,
    )
    table.to_parquet(snakemake.output.table, index=False)
    predictions.to_parquet(snakemake.output.predictions, index=False)
    log.info("\n%s", table.round(2).to_string(index=False))
