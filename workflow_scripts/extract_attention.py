"""Rules attention_store, interaction_streaming, attention_figure_store and explorer_attention_store:
run the baseline over a split and keep its attention (Zarr), or with attention.store: none only U
and dip_score, and the attention of the first attention.figure_images images (for Fig. 3) and of
the explorer's images."""

import torch

from patchinteract.analyses.heads.sample import explorer_images, sample_positions
from patchinteract.attention.extraction import write_attention_store, write_interaction_store_streaming
from patchinteract.models.transforms import eval_dataset
from patchinteract.models.vit import load_baseline
from patchinteract.records import store_record
from patchinteract.runtime import logged_to, select_device, torch_threads
from patchinteract.stores.chunked import store_folder

with logged_to(snakemake.log[0]) as log:
    params, execution, split = snakemake.params, snakemake.params.execution, snakemake.wildcards.split
    torch_threads(snakemake.threads)
    model = load_baseline(params.model, snakemake.input.weights, snakemake.input.manifest)
    dataset = eval_dataset(model, snakemake.input.manifest, split)
    if params.first_images:  # the figure images only (attention.store: none)
        dataset = torch.utils.data.Subset(dataset, range(min(params.first_images, len(dataset))))
    if params.get("explorer_images"):  # the explorer's: the first of the head analyses' images
        indices = explorer_images(sample_positions(snakemake.input.sample), params.explorer_images)
        dataset = torch.utils.data.Subset(dataset, indices.tolist())
    options = {}
    if params.keep_attention:
        write, options["chunk_setting"] = write_attention_store, params.images_per_chunk
    else:
        write = write_interaction_store_streaming
    path = write(
        model,
        dataset,
        store_folder(snakemake.output.store),
        device=select_device(execution.device),
        batch_size=execution.batch_size,
        workers=execution.loader_workers,
        compression_level=params.compression_level,
        **options,
        attributes=store_record(params.record, split),
    )
    log.info("wrote %s", path)
