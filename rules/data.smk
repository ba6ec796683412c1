# Datasets: write (digits), download (url) or index (imagefolder), then one manifest each.


localrules:
    write_digits,
    download_dataset,


rule write_digits:
    output:
        images=directory(paths.dataset_images("{dataset}")),
    log:
        log_file("write_digits", "{dataset}"),
    wildcard_constraints:
        dataset=one_of(grid.datasets_from(config, "digits")),
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **resources_of("default"),
    params:
        dataset=lambda wildcards: grid.dataset_settings(config, wildcards.dataset),
        seed=config["seed"],
    script:
        "../workflow_scripts/write_digits.py"


rule download_dataset:
    output:
        images=directory(paths.dataset_images("{dataset}")),
    log:
        log_file("download_dataset", "{dataset}"),
    wildcard_constraints:
        dataset=one_of(grid.datasets_from(config, "url")),
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **resources_of("default"),
    params:
        dataset=lambda wildcards: grid.dataset_settings(config, wildcards.dataset),
        keep_archives=config["data"]["keep_archives"],
    script:
        "../workflow_scripts/download_dataset.py"


rule dataset_manifest:
    input:
        unpack(lambda wildcards: grid.dataset_images_input(config, wildcards.dataset)),
    output:
        manifest=paths.manifest("{dataset}"),
    log:
        log_file("dataset_manifest", "{dataset}"),
    conda:
        CONDA_ENV
    threads: config["data"]["check_threads"]
    resources:
        **resources_of("default"),
    params:
        dataset=lambda wildcards: grid.dataset_settings(config, wildcards.dataset),
        on_corrupt=config["data"]["on_corrupt"],
    script:
        "../workflow_scripts/make_manifest.py"


# The data set's mean colour over its train split, read only with semantics.masking.fill: dataset_mean.
rule dataset_mean_colour:
    input:
        manifest=paths.manifest("{dataset}"),
    output:
        colour=paths.mean_colour("{dataset}"),
    log:
        log_file("dataset_mean_colour", "{dataset}"),
    conda:
        CONDA_ENV
    threads: config["data"]["check_threads"]
    resources:
        **resources_of("default"),
    script:
        "../workflow_scripts/mean_colour.py"
