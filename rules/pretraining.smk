# MAE pre-training of each experiment's ViT from random weights with random and guided masks (Wu et
# al. Sec. 5.2, Fig. 9), one job per (schedule, seed); the restoration experiment with the pre-trained
# MAEs (Sec. 2, Fig. 2); the table and figures. Outputs under results/<experiment>/pretraining/
# (paths.pretraining_file, paths.restoration_file) and results/tables/; docs/analyses.md.


PRETRAINING = config["pretraining"]

PRETRAINING_RUN_OUTPUTS = {
    name: paths.pretraining_file("{experiment}", "{schedule}", "{seed}", file)
    for name, file in (
        ("curve", "curve.parquet"),
        ("metrics", "metrics.json"),
        ("predictions", paths.PREDICTIONS),
        ("encoder", "encoder.safetensors"),
        ("decoder", "decoder.safetensors"),
    )
}


rule pretrain_mae:
    input:
        unpack(
            lambda wildcards: grid.pretraining_inputs(
                config, wildcards.experiment, wildcards.schedule
            )
        ),
    output:
        **PRETRAINING_RUN_OUTPUTS,
    log:
        log_file("pretrain_mae", "{experiment}_{schedule}_seed{seed}"),
    conda:
        CONDA_ENV
    threads: threads_of("train")
    resources:
        **resources_of("train"),
    params:
        model=model_of,
        record=record_of,
        settings=lambda wildcards: grid.pretraining_settings(config, wildcards.schedule),
        recipe=lambda wildcards: grid.pretraining_settings(config, wildcards.schedule)[
            "recipe"
        ],
        seed=lambda wildcards: int(wildcards.seed),
        config_hash=lambda wildcards: grid.pretraining_fingerprint(
            config, wildcards.experiment, wildcards.schedule, int(wildcards.seed)
        ),
        checkpoint=paths.pretraining_file(
            "{experiment}", "{schedule}", "{seed}", "checkpoint.pt"
        ),
        execution=execution(config["eval"]["batch_size"], kind="train"),
    script:
        "../workflow_scripts/pretrain_mae.py"


# The keypoints of a pre-training data set other than the experiment's own (pretraining.dataset).
use rule keypoints as pretraining_keypoints with:
    input:
        manifest=lambda wildcards: paths.manifest(
            grid.pretraining_dataset(config, wildcards.experiment)
        ),
    output:
        store=zarr_target(
            paths.restoration_file("{experiment}", "keypoints_{split}.zarr")
        ),
        figure=zarr_target(
            paths.restoration_file("{experiment}", "figure_keypoints_{split}.zarr")
        ),
    log:
        log_file("pretraining_keypoints", "{experiment}_{split}"),


rule mae_restoration:
    input:
        manifest=lambda wildcards: paths.manifest(
            grid.pretraining_dataset(config, wildcards.experiment)
        ),
        keypoints=lambda wildcards: grid.pretraining_keypoints(
            config, wildcards.experiment, "val"
        ),
        encoders=lambda wildcards: grid.pretraining_run_files(
            config, wildcards.experiment, "encoder.safetensors"
        ),
        decoders=lambda wildcards: grid.pretraining_run_files(
            config, wildcards.experiment, "decoder.safetensors"
        ),
    output:
        table=paths.restoration_file("{experiment}", "restoration.parquet"),
        images=paths.restoration_file("{experiment}", "restoration_images.parquet"),
        examples=zarr_target(
            paths.restoration_file("{experiment}", "restoration_examples.zarr")
        ),
    log:
        log_file("mae_restoration", "{experiment}"),
    conda:
        CONDA_ENV
    threads: threads_of("inference")
    resources:
        **resources_of("inference"),
    params:
        **UNCERTAINTY,
        model=model_of,
        runs=grid.pretraining_runs(config),
        decoder=PRETRAINING["decoder"],
        mask_ratio=PRETRAINING["mask_ratio"],
        figure_images=PRETRAINING["restoration"]["figure_images"],
        execution=execution(config["eval"]["batch_size"]),
    script:
        "../workflow_scripts/mae_restoration.py"


rule pretraining_table:
    input:
        metrics=lambda wildcards: grid.pretraining_run_files(
            config, wildcards.experiment, "metrics.json"
        ),
        curves=lambda wildcards: grid.pretraining_run_files(
            config, wildcards.experiment, "curve.parquet"
        ),
    output:
        table=paths.table_file("pretraining_{experiment}", ".parquet"),
        curves=paths.table_file("pretraining_curves_{experiment}", ".parquet"),
    log:
        log_file("pretraining_table", "{experiment}"),
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **resources_of("default"),
    params:
        **UNCERTAINTY,
    script:
        "../workflow_scripts/pretraining_table.py"


PRETRAINING_FIGURES = (
    "pretraining_curves",
    "mae_restoration",
)


rule figure_pretraining:
    input:
        curves=paths.table_file("pretraining_curves_{experiment}", ".parquet"),
        table=paths.table_file("pretraining_{experiment}", ".parquet"),
        restoration=paths.restoration_file("{experiment}", "restoration.parquet"),
        examples=zarr_target(
            paths.restoration_file("{experiment}", "restoration_examples.zarr")
        ),
        notebook=notebook_path("pretraining"),
    output:
        **figure_outputs("pretraining", PRETRAINING_FIGURES, "MAE pre-training"),
    log:
        log_file("figures", "{experiment}_pretraining"),
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **resources_of("default"),
    params:
        # Paths (derived from input and output); settings in `settings`, the rerun trigger.
        paths=lambda wildcards, input, output: {
            "curves": input.curves,
            "table": input.table,
            "restoration": input.restoration,
            "examples": store_folder(input.examples),
            "out_dir": str(Path(output.pdfs[0]).parent),
        },
        settings={"rounds_per_step": PRETRAINING["rounds_per_step"]},
    script:
        "../workflow_scripts/run_notebook.py"
