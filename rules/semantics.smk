# Semantic analyses of Wu et al. on each experiment's baseline, for every image of the
# semantics.splits: SIFT keypoints per patch, the semantics store (θ_KK, θ_NK, focus index per
# head; θ_i per patch) with its long table and per-head summary, masking by θ on val, figures.
# Outputs under results/<experiment>/semantics/<split>/ (paths.semantics_file); docs/analyses.md.


SEMANTICS = config["semantics"]

SEMANTICS_PARAMS = dict(
    gamma=SEMANTICS["gamma"],
    weighting=SEMANTICS["weighting"],
    compression_level=config["attention"]["compression_level"],
)


rule keypoints:
    input:
        manifest=manifest_of,
    output:
        store=zarr_target(
            paths.semantics_file("{experiment}", "{split}", "keypoints.zarr")
        ),
        figure=zarr_target(
            paths.semantics_file("{experiment}", "{split}", "figure_keypoints.zarr")
        ),
    log:
        log_file("keypoints", "{experiment}_{split}"),
    conda:
        CONDA_ENV
    threads: threads_of("interaction")
    resources:
        **resources_of("interaction"),
    params:
        model=model_of,
        keypoints=SEMANTICS["keypoints"],
        figure_images=SEMANTICS["figure_images"],
        compression_level=config["attention"]["compression_level"],
    script:
        "../workflow_scripts/keypoints.py"


if config["attention"]["store"] == "zarr":

    rule semantics_store:
        input:
            attention=zarr_target(paths.attention_store("{experiment}", "{split}")),
            keypoints=lambda wildcards: zarr_target(
                paths.semantics_file(
                    wildcards.experiment, wildcards.split, "keypoints.zarr"
                )
            ),
        output:
            store=zarr_target(
                paths.semantics_file("{experiment}", "{split}", "semantics.zarr")
            ),
            theta=paths.semantics_file("{experiment}", "{split}", "theta.parquet"),
        log:
            log_file("semantics_store", "{experiment}_{split}"),
        conda:
            CONDA_ENV
        threads: threads_of("interaction")
        resources:
            **resources_of("interaction"),
        params:
            **SEMANTICS_PARAMS,
            execution=execution(dask=config["interaction"]),
            dask_logs=f"{LOGS}/dask_workers/semantics_{{experiment}}_{{split}}",
        script:
            "../workflow_scripts/semantics_store.py"

else:

    rule semantics_streaming:
        input:
            weights=paths.baseline_weights("{experiment}"),
            manifest=manifest_of,
            keypoints=lambda wildcards: zarr_target(
                paths.semantics_file(
                    wildcards.experiment, wildcards.split, "keypoints.zarr"
                )
            ),
        output:
            store=zarr_target(
                paths.semantics_file("{experiment}", "{split}", "semantics.zarr")
            ),
            theta=paths.semantics_file("{experiment}", "{split}", "theta.parquet"),
        log:
            log_file("semantics_store", "{experiment}_{split}"),
        conda:
            CONDA_ENV
        threads: threads_of("inference")
        resources:
            **resources_of("inference"),
        params:
            **SEMANTICS_PARAMS,
            model=model_of,
            record=record_of,
            execution=execution(config["attention"]["batch_size"], kind="inference"),
        script:
            "../workflow_scripts/semantics_store.py"


rule semantics_summary:
    input:
        theta=paths.semantics_file("{experiment}", "{split}", "theta.parquet"),
    output:
        table=paths.table_file("semantics_summary_{experiment}_{split}", ".parquet"),
        layers=paths.table_file("semantics_layers_{experiment}_{split}", ".parquet"),
        stages=paths.table_file("semantics_stages_{experiment}_{split}", ".parquet"),
    log:
        log_file("semantics_summary", "{experiment}_{split}"),
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **resources_of("default"),
    params:
        **UNCERTAINTY,
    script:
        "../workflow_scripts/semantics_summary.py"


rule theta_masking:
    input:
        unpack(lambda wildcards: grid.mean_colour_input(config, wildcards.experiment)),
        weights=paths.baseline_weights("{experiment}"),
        manifest=manifest_of,
        semantics=lambda wildcards: zarr_target(
            paths.semantics_file(wildcards.experiment, "val", "semantics.zarr")
        ),
    output:
        table=paths.semantics_file("{experiment}", "val", "theta_masking.parquet"),
        predictions=paths.semantics_file(
            "{experiment}", "val", "theta_masking_predictions.parquet"
        ),
    log:
        log_file("theta_masking", "{experiment}"),
    conda:
        CONDA_ENV
    threads: threads_of("inference")
    resources:
        **resources_of("inference"),
    params:
        model=model_of,
        masking=SEMANTICS["masking"],
        seed=config["seed"],
        execution=execution(config["eval"]["batch_size"], kind="inference"),
    script:
        "../workflow_scripts/theta_masking.py"


rule theta_masking_table:
    input:
        table=rules.theta_masking.output.table,
        predictions=rules.theta_masking.output.predictions,
    output:
        points=paths.table_file("theta_masking_{experiment}", ".parquet"),
        tests=paths.table_file("theta_masking_tests_{experiment}", ".parquet"),
    log:
        log_file("theta_masking_table", "{experiment}"),
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **resources_of("default"),
    params:
        **UNCERTAINTY,
    script:
        "../workflow_scripts/theta_masking_table.py"


SEMANTIC_FIGURES = (
    "theta_per_layer",
    "focus_index_per_layer",
    "theta_masking",
    "theta_masked_patches",
    "three_stages",
)


rule figure_semantics:
    input:
        summary=paths.table_file("semantics_summary_{experiment}_val", ".parquet"),
        per_layer=paths.table_file("semantics_layers_{experiment}_val", ".parquet"),
        masking=rules.theta_masking_table.output.points,
        masking_tests=rules.theta_masking_table.output.tests,
        keypoints=zarr_target(
            paths.semantics_file("{experiment}", "val", "figure_keypoints.zarr")
        ),
        semantics=lambda wildcards: zarr_target(
            paths.semantics_file(wildcards.experiment, "val", "semantics.zarr")
        ),
        stages=paths.table_file("semantics_stages_{experiment}_val", ".parquet"),
        attention=lambda wildcards: grid.figure_attention_store(
            config, wildcards.experiment
        ),
        notebook=notebook_path("semantic_analyses"),
    output:
        **figure_outputs("semantic_analyses", SEMANTIC_FIGURES, "Semantic analyses"),
    log:
        log_file("figures", "{experiment}_semantic_analyses"),
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **resources_of("default"),
    params:
        # Paths (derived from input and output); settings in `settings`, the rerun trigger.
        paths=lambda wildcards, input, output: {
            "summary": input.summary,
            "per_layer": input.per_layer,
            "masking": input.masking,
            "masking_tests": input.masking_tests,
            "keypoints": store_folder(input.keypoints),
            "semantics": store_folder(input.semantics),
            "stages": input.stages,
            "attention": store_folder(input.attention),
            "out_dir": str(Path(output.pdfs[0]).parent),
        },
        settings={
            "layers": SEMANTICS["masking"]["layers"],
            "mask_ratio": max(SEMANTICS["masking"]["ratios"]),
        },
    script:
        "../workflow_scripts/run_notebook.py"
