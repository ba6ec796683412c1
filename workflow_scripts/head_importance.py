"""Rule head_importance: every head of the baseline pruned in six modes (Li et al. eq. 3-6) on
the head analyses' sample of a split (heads.sample)."""

import torch

from patchinteract.analyses.heads.pruning import head_importance
from patchinteract.analyses.heads.sample import sample_positions
from patchinteract.models.transforms import eval_dataset
from patchinteract.models.vit import load_baseline
from patchinteract.runtime import logged_to, select_device, torch_threads

with logged_to(snakemake.log[0]) as log:
    params, inputs, execution = snakemake.params, snakemake.input, snakemake.params.execution
    torch_threads(snakemake.threads)
    model = load_baseline(params.model, inputs.weights, inputs.manifest)
    dataset = eval_dataset(model, inputs.manifest, snakemake.wildcards.split)
    images = sample_positions(inputs.sample)
    rows, per_image = head_importance(
        model,
        torch.utils.data.Subset(dataset, images.tolist()),
        device=select_device(execution.device),
        batch_images=execution.batch_size,
        workers=execution.loader_workers,
        variants_per_pass=params.variants_per_pass,
        activation=params.activation,
    )
    rows.to_parquet(snakemake.output.rows, index=False)
    per_image.to_parquet(snakemake.output.images, index=False)
    strongest = rows[rows["mode"] == 1].groupby(["layer", "head"])["prob"].mean().nlargest(3)
    log.info(
        "%d images, %d rows; largest mean I_prob: %s",
        len(per_image),
        len(rows),
        ", ".join(f"L{layer}H{head} {value:.4f}" for (layer, head), value in strongest.items()),
    )
