# U (eq. 2-3) and dip_score per image: from the attention store with Dask, or
# streamed during inference when attention.store is none.


if config["attention"]["store"] == "zarr":

    rule interaction_store:
        input:
            attention=zarr_target(paths.attention_store("{experiment}", "{split}")),
        output:
            store=zarr_target(paths.interaction_store("{experiment}", "{split}")),
        log:
            log_file("interaction_store", "{experiment}_{split}"),
        priority: RETRAINING_PATH
        conda:
            CONDA_ENV
        threads: threads_of("interaction")
        resources:
            **resources_of("interaction"),
        params:
            compression_level=config["attention"]["compression_level"],
            execution=execution(dask=config["interaction"]),
            # Slurm output of the Dask worker jobs (interaction.dask: slurm).
            dask_logs=f"{LOGS}/dask_workers/{{experiment}}_{{split}}",
        script:
            "../workflow_scripts/compute_interaction.py"

else:

    rule interaction_streaming:
        input:
            weights=paths.baseline_weights("{experiment}"),
            manifest=manifest_of,
        output:
            store=zarr_target(paths.interaction_store("{experiment}", "{split}")),
        log:
            log_file("interaction_streaming", "{experiment}_{split}"),
        priority: RETRAINING_PATH
        conda:
            CONDA_ENV
        threads: threads_of("inference")
        resources:
            **resources_of("inference"),
        params:
            model=model_of,
            record=record_of,
            keep_attention=False,
            first_images=None,
            images_per_chunk=None,
            compression_level=config["attention"]["compression_level"],
            execution=execution(config["attention"]["batch_size"], kind="inference"),
        script:
            "../workflow_scripts/extract_attention.py"

    # The attention of the first attention.figure_images images, for Fig. 3.
    use rule interaction_streaming as attention_figure_store with:
        output:
            store=zarr_target(paths.figure_attention_store("{experiment}", "{split}")),
        log:
            log_file("attention_figure_store", "{experiment}_{split}"),
        params:
            model=model_of,
            record=record_of,
            keep_attention=True,
            first_images=config["attention"]["figure_images"],
            images_per_chunk=config["attention"]["images_per_chunk"],
            compression_level=config["attention"]["compression_level"],
            execution=execution(config["attention"]["batch_size"], kind="inference"),
