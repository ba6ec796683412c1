# Tables of every trained or evaluated model (results/tables/).

TABLE_NAMES = [
    "runs",
    "table1_awd",
    "table2_awd_dip",
    "table3_winft",
    "table4_transfer",
]


localrules:
    tables,


rule tables:
    input:
        metrics=baseline_metrics() + retrain_metrics(),
    output:
        parquet=expand(f"{RESULTS}/tables/{{name}}.parquet", name=TABLE_NAMES),
        runs=report(
            f"{RESULTS}/tables/runs.md",
            caption="../report/runs.rst",
            category="Tables",
        ),
        table1=report(
            f"{RESULTS}/tables/table1_awd.md",
            caption="../report/table1_awd.rst",
            category="Tables",
        ),
        table2=report(
            f"{RESULTS}/tables/table2_awd_dip.md",
            caption="../report/table2_awd_dip.rst",
            category="Tables",
        ),
        table3=report(
            f"{RESULTS}/tables/table3_winft.md",
            caption="../report/table3_winft.rst",
            category="Tables",
        ),
        table4=report(
            f"{RESULTS}/tables/table4_transfer.md",
            caption="../report/table4_transfer.rst",
            category="Tables",
        ),
    log:
        f"{LOGS}/tables/tables.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **resources_of("default"),
    script:
        "../workflow_scripts/make_tables.py"


# Figures: notebooks/<name>.ipynb run with papermill; PNG and PDF under results/figures/,
# the executed notebook under results/figures/notebooks/ as a record.


rule figure_accuracy_vs_interactions:
    input:
        table=f"{RESULTS}/tables/table1_awd.parquet",
        notebook=f"{workflow.basedir}/notebooks/accuracy_vs_interactions.ipynb",
    output:
        png=report(
            f"{RESULTS}/figures/accuracy_vs_interactions.png",
            caption="../report/accuracy_vs_interactions.rst",
            category="Figures",
            subcategory="all experiments",
        ),
        pdf=f"{RESULTS}/figures/accuracy_vs_interactions.pdf",
        notebook=f"{RESULTS}/figures/notebooks/accuracy_vs_interactions.ipynb",
    log:
        f"{LOGS}/figures/accuracy_vs_interactions.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **resources_of("default"),
    params:
        parameters=lambda wildcards, input, output: {
            "table1": input.table,
            "out_stem": output.png.removesuffix(".png"),
        },
    script:
        "../workflow_scripts/run_notebook.py"


rule figure_winft_windows:
    input:
        store=zarr_store(f"{RESULTS}/{{experiment}}/retrain/winft/figure_windows.zarr"),
        manifest=manifest_of,
        notebook=f"{workflow.basedir}/notebooks/winft_windows.ipynb",
    output:
        png=report(
            f"{RESULTS}/figures/{{experiment}}/winft_windows.png",
            caption="../report/winft_windows.rst",
            category="Figures",
            subcategory="{experiment}",
        ),
        pdf=f"{RESULTS}/figures/{{experiment}}/winft_windows.pdf",
        notebook=f"{RESULTS}/figures/notebooks/{{experiment}}_winft_windows.ipynb",
    log:
        f"{LOGS}/figures/{{experiment}}_winft_windows.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **resources_of("default"),
    params:
        parameters=lambda wildcards, input, output: {
            "figure_store": store_folder(input.store),
            "manifest": input.manifest,
            "out_stem": output.png.removesuffix(".png"),
        },
    script:
        "../workflow_scripts/run_notebook.py"


rule figure_patch_interactions:
    input:
        interaction=zarr_store(f"{RESULTS}/{{experiment}}/interaction/val.zarr"),
        fields=lambda wildcards: field_store(
            wildcards.experiment, "val", config["dip_alphas"][0], config["betas"][0]
        ),
        manifest=manifest_of,
        notebook=f"{workflow.basedir}/notebooks/patch_interactions.ipynb",
    output:
        fig5=report(
            f"{RESULTS}/figures/{{experiment}}/fig5_interaction_map.png",
            caption="../report/fig5_interaction_map.rst",
            category="Figures",
            subcategory="{experiment}",
        ),
        fig6=report(
            f"{RESULTS}/figures/{{experiment}}/fig6_dip.png",
            caption="../report/fig6_dip.rst",
            category="Figures",
            subcategory="{experiment}",
        ),
        fig7=report(
            f"{RESULTS}/figures/{{experiment}}/fig7_fields.png",
            caption="../report/fig7_fields.rst",
            category="Figures",
            subcategory="{experiment}",
        ),
        pdfs=expand(
            f"{RESULTS}/figures/{{{{experiment}}}}/{{name}}.pdf",
            name=["fig5_interaction_map", "fig6_dip", "fig7_fields"],
        ),
        notebook=f"{RESULTS}/figures/notebooks/{{experiment}}_patch_interactions.ipynb",
    log:
        f"{LOGS}/figures/{{experiment}}_patch_interactions.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **resources_of("default"),
    params:
        parameters=lambda wildcards, input, output: {
            "interaction_store": store_folder(input.interaction),
            "field_store": store_folder(input.fields),
            "manifest": input.manifest,
            "out_dir": str(Path(output.fig5).parent),
            "betas": sorted({0.07, 0.5, *config["betas"]}),
        },
    script:
        "../workflow_scripts/run_notebook.py"


rule figure_attention_rows:
    input:
        attention=figure_attention_store,
        interaction=zarr_store(f"{RESULTS}/{{experiment}}/interaction/val.zarr"),
        manifest=manifest_of,
        notebook=f"{workflow.basedir}/notebooks/attention_rows.ipynb",
    output:
        png=report(
            f"{RESULTS}/figures/{{experiment}}/fig3_attention_rows.png",
            caption="../report/fig3_attention_rows.rst",
            category="Figures",
            subcategory="{experiment}",
        ),
        pdf=f"{RESULTS}/figures/{{experiment}}/fig3_attention_rows.pdf",
        notebook=f"{RESULTS}/figures/notebooks/{{experiment}}_attention_rows.ipynb",
    log:
        f"{LOGS}/figures/{{experiment}}_attention_rows.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **resources_of("default"),
    params:
        parameters=lambda wildcards, input, output: {
            "attention_store": store_folder(input.attention),
            "interaction_store": store_folder(input.interaction),
            "manifest": input.manifest,
            "out_stem": output.png.removesuffix(".png"),
        },
    script:
        "../workflow_scripts/run_notebook.py"


rule figure_image_panels:
    input:
        interaction=zarr_store(f"{RESULTS}/{{experiment}}/interaction/val.zarr"),
        fields=lambda wildcards: field_store(
            wildcards.experiment, "val", config["dip_alphas"][0], config["betas"][0]
        ),
        manifest=manifest_of,
        notebook=f"{workflow.basedir}/notebooks/image_panels.ipynb",
    output:
        png=report(
            f"{RESULTS}/figures/{{experiment}}/fig9_image_panels.png",
            caption="../report/fig9_image_panels.rst",
            category="Figures",
            subcategory="{experiment}",
        ),
        pdf=f"{RESULTS}/figures/{{experiment}}/fig9_image_panels.pdf",
        notebook=f"{RESULTS}/figures/notebooks/{{experiment}}_image_panels.ipynb",
    log:
        f"{LOGS}/figures/{{experiment}}_image_panels.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **resources_of("default"),
    params:
        parameters=lambda wildcards, input, output: {
            "interaction_store": store_folder(input.interaction),
            "field_store": store_folder(input.fields),
            "manifest": input.manifest,
            "out_stem": output.png.removesuffix(".png"),
        },
    script:
        "../workflow_scripts/run_notebook.py"
