# Datasets: write (digits), download (url) or index (imagefolder), then one manifest each.


localrules:
    write_digits,
    download_dataset,


rule write_digits:
    output:
        images=directory(f"{RESULTS}/datasets/{{dataset}}/images"),
    log:
        f"{LOGS}/write_digits/{{dataset}}.log",
    wildcard_constraints:
        dataset=one_of(datasets_from("digits")),
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **resources_of("default"),
    params:
        dataset=lambda wildcards: config["datasets"][wildcards.dataset],
        seed=config["seed"],
    script:
        "../workflow_scripts/write_digits.py"


rule download_dataset:
    output:
        images=directory(f"{RESULTS}/datasets/{{dataset}}/images"),
    log:
        f"{LOGS}/download_dataset/{{dataset}}.log",
    wildcard_constraints:
        dataset=one_of(datasets_from("url")),
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **resources_of("default"),
    params:
        dataset=lambda wildcards: config["datasets"][wildcards.dataset],
        keep_archives=config["data"]["keep_archives"],
    script:
        "../workflow_scripts/download_dataset.py"


rule dataset_manifest:
    input:
        unpack(dataset_images),
    output:
        manifest=f"{RESULTS}/datasets/{{dataset}}/manifest.parquet",
    log:
        f"{LOGS}/dataset_manifest/{{dataset}}.log",
    conda:
        CONDA_ENV
    threads: config["data"]["check_threads"]
    resources:
        **resources_of("default"),
    params:
        dataset=lambda wildcards: config["datasets"][wildcards.dataset],
        on_corrupt=config["data"]["on_corrupt"],
    script:
        "../workflow_scripts/make_manifest.py"
