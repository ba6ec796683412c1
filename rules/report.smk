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
