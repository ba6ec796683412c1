# Masks from the interaction store: windows per alpha (eq. 4-5), kept tokens per beta
# (DIP), responsive fields per (alpha, beta) (eq. 6-7).


rule window_masks:
    input:
        interaction=zarr_store(f"{RESULTS}/{{experiment}}/interaction/{{split}}.zarr"),
    output:
        store=zarr_store(
            f"{RESULTS}/{{experiment}}/masks/{{split}}/window_a{{alpha}}.zarr"
        ),
    log:
        f"{LOGS}/window_masks/{{experiment}}_{{split}}_a{{alpha}}.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **resources_of("default"),
    params:
        kind="window",
        alpha=lambda wildcards: float(wildcards.alpha),
    script:
        "../workflow_scripts/compute_masks.py"


rule token_masks:
    input:
        interaction=zarr_store(f"{RESULTS}/{{experiment}}/interaction/{{split}}.zarr"),
    output:
        store=zarr_store(
            f"{RESULTS}/{{experiment}}/masks/{{split}}/keep_b{{beta}}.zarr"
        ),
    log:
        f"{LOGS}/token_masks/{{experiment}}_{{split}}_b{{beta}}.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **resources_of("default"),
    params:
        kind="keep",
        beta=lambda wildcards: float(wildcards.beta),
    script:
        "../workflow_scripts/compute_masks.py"


rule responsive_fields:
    input:
        interaction=zarr_store(f"{RESULTS}/{{experiment}}/interaction/{{split}}.zarr"),
        keep=zarr_store(f"{RESULTS}/{{experiment}}/masks/{{split}}/keep_b{{beta}}.zarr"),
    output:
        store=zarr_store(
            f"{RESULTS}/{{experiment}}/masks/{{split}}/fields_a{{alpha}}_b{{beta}}.zarr"
        ),
    log:
        f"{LOGS}/responsive_fields/{{experiment}}_{{split}}_a{{alpha}}_b{{beta}}.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **resources_of("default"),
    params:
        kind="fields",
        alpha=lambda wildcards: float(wildcards.alpha),
        beta=lambda wildcards: float(wildcards.beta),
    script:
        "../workflow_scripts/compute_masks.py"
