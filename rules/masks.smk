# Masks from the interaction store: windows per alpha (eq. 4-5), kept tokens per beta
# (DIP), responsive fields per (alpha, beta) (eq. 6-7).


rule window_masks:
    input:
        interaction=zarr_target(paths.interaction_store("{experiment}", "{split}")),
    output:
        store=zarr_target(paths.window_store("{experiment}", "{split}", "{alpha}")),
    log:
        log_file("window_masks", "{experiment}_{split}_a{alpha}"),
    priority: RETRAINING_PATH
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **resources_of("default"),
    params:
        kind="window",
        alpha=mask_alpha,
        compression_level=config["attention"]["compression_level"],
    script:
        "../workflow_scripts/compute_masks.py"


rule token_masks:
    input:
        interaction=zarr_target(paths.interaction_store("{experiment}", "{split}")),
    output:
        store=zarr_target(paths.keep_store("{experiment}", "{split}", "{beta}")),
    log:
        log_file("token_masks", "{experiment}_{split}_b{beta}"),
    priority: RETRAINING_PATH
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **resources_of("default"),
    params:
        kind="keep",
        beta=mask_beta,
        compression_level=config["attention"]["compression_level"],
    script:
        "../workflow_scripts/compute_masks.py"


rule responsive_fields:
    input:
        interaction=zarr_target(paths.interaction_store("{experiment}", "{split}")),
        keep=zarr_target(paths.keep_store("{experiment}", "{split}", "{beta}")),
    output:
        store=zarr_target(
            paths.field_store("{experiment}", "{split}", "{alpha}", "{beta}")
        ),
    log:
        log_file("responsive_fields", "{experiment}_{split}_a{alpha}_b{beta}"),
    priority: RETRAINING_PATH
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **resources_of("default"),
    params:
        kind="fields",
        alpha=mask_alpha,
        beta=mask_beta,
        compression_level=config["attention"]["compression_level"],
    script:
        "../workflow_scripts/compute_masks.py"
