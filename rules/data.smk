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
    threads: 1
    resources:
        **resources_of("default"),
    params:
        dataset=lambda wildcards: config["datasets"][wildcards.dataset],
        keep_archives=config["data"]["keep_archives"],
    script:
        "../workflow_scripts/download_dataset.py"


def dataset_images(wildcards):
    """The images folder a manifest needs, unless the dataset is a local ImageFolder."""
    if config["datasets"][wildcards.dataset]["source"] == "imagefolder":
        return {}
    return {"images": f"{RESULTS}/datasets/{wildcards.dataset}/images"}


rule dataset_manifest:
    input:
        unpack(dataset_images),
    output:
        manifest=f"{RESULTS}/datasets/{{dataset}}/manifest.parquet",
    log:
        f"{LOGS}/dataset_manifest/{{dataset}}.log",
    threads: config["data"]["check_threads"]
    resources:
        **resources_of("default"),
    params:
        dataset=lambda wildcards: config["datasets"][wildcards.dataset],
        on_corrupt=config["data"]["on_corrupt"],
    script:
        "../workflow_scripts/make_manifest.py"
