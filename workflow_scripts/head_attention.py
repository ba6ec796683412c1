"""Rules head_attention_store and head_attention_streaming: the head-attention store (Li et al.) of
the head analyses' sample of a split, from the attention store with Dask or streamed during inference, and
its strength tables."""

import torch

from patchinteract.analyses.heads.sample import sample_positions
from patchinteract.analyses.heads.store import compute_head_store, strength_tables, write_head_store_streaming
from patchinteract.runtime import logged_to, torch_threads
from patchinteract.stores.chunked import store_folder

with logged_to(snakemake.log[0]) as log:
    params, inputs, execution = snakemake.params, snakemake.input, snakemake.params.execution
    out = store_folder(snakemake.output.store)
    if "attention" in inputs.keys():
        attention = store_folder(inputs.attention)
        images = sample_positions(inputs.sample)
        compute_head_store(
            attention,
            out,
            images,
            params.top_share,
            compression_level=params.compression_level,
            dask=execution.dask_settings(params.dask_logs),
        )
    else:
        from patchinteract.models.transforms import eval_dataset
        from patchinteract.models.vit import load_baseline
        from patchinteract.records import store_record
        from patchinteract.runtime import select_device

        torch_threads(snakemake.threads)
        model = load_baseline(params.model, inputs.weights, inputs.manifest)
        dataset = eval_dataset(model, inputs.manifest, snakemake.wildcards.split)
        images = sample_positions(inputs.sample)
        write_head_store_streaming(
            model,
            torch.utils.data.Subset(dataset, images.tolist()),
            out,
            params.top_share,
            device=select_device(execution.device),
            batch_size=execution.batch_size,
            workers=execution.loader_workers,
            compression_level=params.compression_level,
            attributes=store_record(params.record, snakemake.wildcards.split),
        )
    per_hop, per_head = strength_tables(out)
    per_hop.to_parquet(snakemake.output.strength, index=False)
    per_head.to_parquet(snakemake.output.head_strength, index=False)
    log.info(
        "%d images: mean entropy per layer %s",
        len(images),
        per_head.groupby("layer")["entropy"].mean().round(3).tolist(),
    )
