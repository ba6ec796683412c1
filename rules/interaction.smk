# U (eq. 2-3) and dip_score per image: from the attention store with Dask, or
# streamed during inference when attention.store is none.

if config["attention"]["store"] == "zarr":

    rule interaction_store:
        input:
            attention=zarr_store(f"{RESULTS}/{{experiment}}/attention/{{split}}.zarr"),
        output:
            store=zarr_store(f"{RESULTS}/{{experiment}}/interaction/{{split}}.zarr"),
        log:
            f"{LOGS}/interaction_store/{{experiment}}_{{split}}.log",
        conda:
            CONDA_ENV
        threads: threads_of("interaction")
        resources:
            **resources_of("interaction"),
        params:
            # Slurm output of the Dask worker jobs (interaction.dask: slurm).
            dask_logs=f"{LOGS}/dask_workers/{{experiment}}_{{split}}",
        script:
            "../workflow_scripts/compute_interaction.py"

else:

    rule interaction_streaming:
        input:
            weights=f"{RESULTS}/{{experiment}}/model/baseline.safetensors",
            manifest=manifest_of,
        output:
            store=zarr_store(f"{RESULTS}/{{experiment}}/interaction/{{split}}.zarr"),
        log:
            f"{LOGS}/interaction_streaming/{{experiment}}_{{split}}.log",
        conda:
            CONDA_ENV
        threads: threads_of("inference")
        resources:
            **resources_of("inference"),
        params:
            keep_attention=False,
            first_images=None,
        script:
            "../workflow_scripts/extract_attention.py"

    # The attention of the first attention.figure_images images, for Fig. 3.
    use rule interaction_streaming as attention_figure_store with:
        output:
            store=zarr_store(
                f"{RESULTS}/{{experiment}}/attention/{{split}}_figures.zarr"
            ),
        log:
            f"{LOGS}/attention_figure_store/{{experiment}}_{{split}}.log",
        params:
            keep_attention=True,
            first_images=config["attention"]["figure_images"],
