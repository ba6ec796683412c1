# Tables of every trained or evaluated model (results/tables/).


localrules:
    tables,


rule tables:
    input:
        metrics=grid.baseline_files(config) + grid.branch_files(config),
        predictions=grid.baseline_files(config, paths.PREDICTIONS)
        + grid.branch_files(config, paths.PREDICTIONS),
    output:
        parquet=[paths.table_file(name, ".parquet") for name in paths.TABLE_NAMES],
        markdown=[
            report(
                paths.table_file(name, ".md"),
                caption=f"../report/{name}.rst",
                category="Tables",
            )
            for name in paths.TABLE_NAMES
        ],
    log:
        log_file("tables", "tables"),
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **resources_of("default"),
    params:
        **UNCERTAINTY,
        transfer_datasets=config["tables"]["transfer_datasets"],
    script:
        "../workflow_scripts/make_tables.py"


# Figures: notebooks/<name>.ipynb run with papermill; PNG and PDF under results/figures/,
# the executed notebook under results/figures/notebooks/ as a record.


rule figure_accuracy_vs_interactions:
    input:
        table=paths.table_file("table1_awd", ".parquet"),
        notebook=notebook_path("accuracy_vs_interactions"),
    output:
        **figure_outputs(
            "accuracy_vs_interactions",
            ["accuracy_vs_interactions"],
            "Figures",
            experiment=None,
        ),
    log:
        log_file("figures", "accuracy_vs_interactions"),
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **resources_of("default"),
    params:
        # Paths (derived from input and output); settings in `settings`, the rerun trigger.
        paths=lambda wildcards, input, output: {
            "table1": input.table,
            "out_stem": output.pngs[0].removesuffix(".png"),
        },
    script:
        "../workflow_scripts/run_notebook.py"


rule figure_winft_windows:
    input:
        # the windows of the first seed's WinFT
        store=zarr_target(
            paths.branch_file(
                "{experiment}",
                WindowFreeBranch.pattern,
                config["seeds"][0],
                WindowFreeBranch.outputs["figure"],
            )
        ),
        manifest=manifest_of,
        class_names=class_names_file_of,
        notebook=notebook_path("winft_windows"),
    output:
        **figure_outputs("winft_windows", ["winft_windows"], "Figures"),
    log:
        log_file("figures", "{experiment}_winft_windows"),
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **resources_of("default"),
    params:
        # Paths (derived from input and output); settings in `settings`, the rerun trigger.
        paths=lambda wildcards, input, output: {
            "figure_store": store_folder(input.store),
            "manifest": input.manifest,
            "class_names": one_or_none(input.class_names),
            "out_stem": output.pngs[0].removesuffix(".png"),
        },
    script:
        "../workflow_scripts/run_notebook.py"


rule figure_patch_interactions:
    input:
        interaction=zarr_target(paths.interaction_store("{experiment}", "val")),
        fields=lambda wildcards: grid.figure_field_store(config, wildcards.experiment),
        keep=lambda wildcards: grid.val_keep_stores(
            wildcards.experiment, grid.kept_token_figure_betas(config)
        ),
        manifest=manifest_of,
        class_names=class_names_file_of,
        notebook=notebook_path("patch_interactions"),
    output:
        **figure_outputs(
            "patch_interactions",
            ["fig5_interaction_map", "fig6_dip", "fig7_fields"],
            "Figures",
        ),
    log:
        log_file("figures", "{experiment}_patch_interactions"),
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **resources_of("default"),
    params:
        # Paths (derived from input and output); settings in `settings`, the rerun trigger.
        paths=lambda wildcards, input, output: {
            "interaction_store": store_folder(input.interaction),
            "field_store": store_folder(input.fields),
            "manifest": input.manifest,
            "class_names": one_or_none(input.class_names),
            "keep_stores": [str(store_folder(keep)) for keep in input.keep],
            "out_dir": str(Path(output.pdfs[0]).parent),
        },
        settings={"image_index": config["figures"]["image_index"]},
    script:
        "../workflow_scripts/run_notebook.py"


rule figure_attention_rows:
    input:
        attention=lambda wildcards: grid.figure_attention_store(
            config, wildcards.experiment
        ),
        interaction=zarr_target(paths.interaction_store("{experiment}", "val")),
        manifest=manifest_of,
        class_names=class_names_file_of,
        notebook=notebook_path("attention_rows"),
    output:
        **figure_outputs("attention_rows", ["fig3_attention_rows"], "Figures"),
    log:
        log_file("figures", "{experiment}_attention_rows"),
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **resources_of("default"),
    params:
        # Paths (derived from input and output); settings in `settings`, the rerun trigger.
        paths=lambda wildcards, input, output: {
            "attention_store": store_folder(input.attention),
            "interaction_store": store_folder(input.interaction),
            "manifest": input.manifest,
            "class_names": one_or_none(input.class_names),
            "out_stem": output.pngs[0].removesuffix(".png"),
        },
    script:
        "../workflow_scripts/run_notebook.py"


rule figure_image_panels:
    input:
        interaction=zarr_target(paths.interaction_store("{experiment}", "val")),
        fields=lambda wildcards: grid.figure_field_store(config, wildcards.experiment),
        keep=lambda wildcards: grid.val_keep_stores(
            wildcards.experiment, config["figures"]["dip_betas"]
        ),
        manifest=manifest_of,
        class_names=class_names_file_of,
        notebook=notebook_path("image_panels"),
    output:
        **figure_outputs("image_panels", ["fig9_image_panels"], "Figures"),
    log:
        log_file("figures", "{experiment}_image_panels"),
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **resources_of("default"),
    params:
        # Paths (derived from input and output); settings in `settings`, the rerun trigger.
        paths=lambda wildcards, input, output: {
            "interaction_store": store_folder(input.interaction),
            "field_store": store_folder(input.fields),
            "keep_stores": [str(store_folder(keep)) for keep in input.keep],
            "manifest": input.manifest,
            "class_names": one_or_none(input.class_names),
            "out_stem": output.pngs[0].removesuffix(".png"),
        },
        settings={"images": config["figures"]["panel_images"]},
    script:
        "../workflow_scripts/run_notebook.py"
