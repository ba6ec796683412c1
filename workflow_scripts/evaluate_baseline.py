"""Rule evaluate_baseline: top-1/top-5 of the baseline on the val split, as JSON, and its per-image predictions."""

import torch

from patchinteract.models.transforms import eval_dataset
from patchinteract.models.vit import load_baseline
from patchinteract.records import model_record, write_json
from patchinteract.runtime import logged_to, select_device, torch_threads
from patchinteract.training.evaluation import evaluate_classifier

with logged_to(snakemake.log[0]) as log:
    params, execution = snakemake.params, snakemake.params.execution
    torch_threads(snakemake.threads)
    model = load_baseline(params.model, snakemake.input.weights, snakemake.input.manifest)
    dataset = eval_dataset(model, snakemake.input.manifest, "val")
    loader = torch.utils.data.DataLoader(dataset, batch_size=execution.batch_size, num_workers=execution.loader_workers)
    metrics, predictions = evaluate_classifier(model, loader, select_device(execution.device))
    metrics |= model_record(params.record, model) | {"method": "baseline"}
    predictions.to_parquet(snakemake.output.predictions, index=False)
    write_json(snakemake.output.metrics, metrics)
    log.info("val top-1 %.2f%% on %d images", metrics["top1"], metrics["n_images"])
