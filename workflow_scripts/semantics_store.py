"""Rules semantics_store and semantics_streaming: θ_KK, θ_NK, the focus index and θ_i per patch (Wu et
al. eq. 2-5) of every image of a split, from the attention store with Dask or streamed during
inference, and the long table theta.parquet."""

from patchinteract.analyses.semantics.store import compute_semantics_store, theta_table, write_semantics_store_streaming
from patchinteract.runtime import logged_to, torch_threads
from patchinteract.stores.chunked import store_folder

with logged_to(snakemake.log[0]) as log:
    params, inputs, execution = snakemake.params, snakemake.input, snakemake.params.execution
    settings = {"gamma": params.gamma, "weighting": params.weighting, "compression_level": params.compression_level}
    out, keypoints = store_folder(snakemake.output.store), store_folder(inputs.keypoints)
    if "attention" in inputs.keys():
        compute_semantics_store(
            store_folder(inputs.attention),
            keypoints,
            out,
            **settings,
            dask_settings=execution.dask_settings(params.dask_logs),
        )
    else:
        from patchinteract.models.transforms import eval_dataset
        from patchinteract.models.vit import load_baseline
        from patchinteract.records import store_record
        from patchinteract.runtime import select_device

        torch_threads(snakemake.threads)
        model = load_baseline(params.model, inputs.weights, inputs.manifest)
        write_semantics_store_streaming(
            model,
            eval_dataset(model, inputs.manifest, snakemake.wildcards.split),
            keypoints,
            out,
            **settings,
            device=select_device(execution.device),
            batch_size=execution.batch_size,
            workers=execution.loader_workers,
            attributes=store_record(params.record, snakemake.wildcards.split),
        )
    theta = theta_table(out)
    theta.to_parquet(snakemake.output.theta, index=False)
    per_layer = theta.groupby("layer")[["theta_kk", "theta_nk", "focus_index"]].mean().round(3)
    log.info("%d images; per layer:\n%s", theta["image_id"].nunique(), per_layer.to_string())
