# Tables of every trained or evaluated model (results/tables/).

TABLE_NAMES = ["runs", "table1_awd", "table2_awd_dip", "table3_winft"]


localrules:
    tables,


rule tables:
    input:
        metrics=baseline_metrics() + retrain_metrics(),
    output:
        parquet=expand(f"{RESULTS}/tables/{{name}}.parquet", name=TABLE_NAMES),
        markdown=expand(f"{RESULTS}/tables/{{name}}.md", name=TABLE_NAMES),
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
        png=f"{RESULTS}/figures/accuracy_vs_interactions.png",
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
        store=f"{RESULTS}/{{experiment}}/retrain/winft/figure_windows.zarr",
        manifest=manifest_of,
        notebook=f"{workflow.basedir}/notebooks/winft_windows.ipynb",
    output:
        png=f"{RESULTS}/figures/{{experiment}}/winft_windows.png",
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
            "figure_store": input.store,
            "manifest": input.manifest,
            "out_stem": output.png.removesuffix(".png"),
        },
    script:
        "../workflow_scripts/run_notebook.py"


rule figure_patch_interactions:
    input:
        interaction=f"{RESULTS}/{{experiment}}/interaction/val.zarr",
        fields=lambda wildcards: field_store(
            wildcards.experiment, "val", config["dip_alphas"][0], config["betas"][0]
        ),
        manifest=manifest_of,
        notebook=f"{workflow.basedir}/notebooks/patch_interactions.ipynb",
    output:
        figures=expand(
            f"{RESULTS}/figures/{{{{experiment}}}}/{{name}}.{{ext}}",
            name=["fig5_interaction_map", "fig6_dip", "fig7_fields"],
            ext=["png", "pdf"],
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
            "interaction_store": input.interaction,
            "field_store": input.fields,
            "manifest": input.manifest,
            "out_dir": str(Path(output.notebook).parent.parent / wildcards.experiment),
            "betas": sorted({0.07, 0.5, *config["betas"]}),
        },
    script:
        "../workflow_scripts/run_notebook.py"
