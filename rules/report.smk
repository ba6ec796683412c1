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
        runs=report(
            paths.table_file("runs", ".md"),
            caption="../report/runs.rst",
            category="Tables",
        ),
        table1=report(
            paths.table_file("table1_awd", ".md"),
            caption="../report/table1_awd.rst",
            category="Tables",
        ),
        table2=report(
            paths.table_file("table2_awd_dip", ".md"),
            caption="../report/table2_awd_dip.rst",
            category="Tables",
        ),
        table3=report(
            paths.table_file("table3_winft", ".md"),
            caption="../report/table3_winft.rst",
            category="Tables",
        ),
        table4=report(
            paths.table_file("table4_transfer", ".md"),
            caption="../report/table4_transfer.rst",
            category="Tables",
        ),
        comparisons=report(
            paths.table_file("comparisons", ".md"),
            caption="../report/comparisons.rst",
            category="Tables",
        ),
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
        png=report(
            paths.figure_file("accuracy_vs_interactions", ".png"),
            caption="../report/accuracy_vs_interactions.rst",
            category="Figures",
            subcategory="all experiments",
        ),
        pdf=paths.figure_file("accuracy_vs_interactions", ".pdf"),
        notebook=paths.executed_notebook("accuracy_vs_interactions"),
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
            "out_stem": output.png.removesuffix(".png"),
        },
    script:
        "../workflow_scripts/run_notebook.py"


rule figure_winft_windows:
    input:
        # the windows of the first seed's WinFT
        store=zarr_target(
            paths.branch_file(
                "{experiment}",
                paths.WINFT_BRANCH,
                config["seeds"][0],
                "figure_windows.zarr",
            )
        ),
        manifest=manifest_of,
        class_names=class_names_file_of,
        notebook=notebook_path("winft_windows"),
    output:
        png=report(
            paths.figure_file("winft_windows", ".png", "{experiment}"),
            caption="../report/winft_windows.rst",
            category="Figures",
            subcategory="{experiment}",
        ),
        pdf=paths.figure_file("winft_windows", ".pdf", "{experiment}"),
        notebook=paths.executed_notebook("winft_windows", "{experiment}"),
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
            "out_stem": output.png.removesuffix(".png"),
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
        fig5=report(
            paths.figure_file("fig5_interaction_map", ".png", "{experiment}"),
            caption="../report/fig5_interaction_map.rst",
            category="Figures",
            subcategory="{experiment}",
        ),
        fig6=report(
            paths.figure_file("fig6_dip", ".png", "{experiment}"),
            caption="../report/fig6_dip.rst",
            category="Figures",
            subcategory="{experiment}",
        ),
        fig7=report(
            paths.figure_file("fig7_fields", ".png", "{experiment}"),
            caption="../report/fig7_fields.rst",
            category="Figures",
            subcategory="{experiment}",
        ),
        pdfs=[
            paths.figure_file(name, ".pdf", "{experiment}")
            for name in ("fig5_interaction_map", "fig6_dip", "fig7_fields")
        ],
        notebook=paths.executed_notebook("patch_interactions", "{experiment}"),
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
            "out_dir": str(Path(output.fig5).parent),
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
        png=report(
            paths.figure_file("fig3_attention_rows", ".png", "{experiment}"),
            caption="../report/fig3_attention_rows.rst",
            category="Figures",
            subcategory="{experiment}",
        ),
        pdf=paths.figure_file("fig3_attention_rows", ".pdf", "{experiment}"),
        notebook=paths.executed_notebook("attention_rows", "{experiment}"),
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
            "out_stem": output.png.removesuffix(".png"),
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
        png=report(
            paths.figure_file("fig9_image_panels", ".png", "{experiment}"),
            caption="../report/fig9_image_panels.rst",
            category="Figures",
            subcategory="{experiment}",
        ),
        pdf=paths.figure_file("fig9_image_panels", ".pdf", "{experiment}"),
        notebook=paths.executed_notebook("image_panels", "{experiment}"),
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
            "out_stem": output.png.removesuffix(".png"),
        },
        settings={"images": config["figures"]["panel_images"]},
    script:
        "../workflow_scripts/run_notebook.py"
