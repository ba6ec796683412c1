# Baseline weights (hub, local file, or trained here) and their evaluation.


localrules:
    fetch_timm_weights,
    fetch_init_weights,


# The baseline gates every later stage: it starts first.
BASELINE_FIRST = 2


rule fetch_timm_weights:
    output:
        weights=paths.baseline_weights("{experiment}"),
    log:
        log_file("fetch_timm_weights", "{experiment}"),
    wildcard_constraints:
        experiment=one_of(grid.experiments_with_weights(config, "timm")),
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **resources_of("default"),
    params:
        model=model_of,
        model_name=lambda wildcards: config["experiments"][wildcards.experiment][
            "model"
        ],
    script:
        "../workflow_scripts/fetch_timm_weights.py"


rule fetch_init_weights:
    output:
        weights=paths.init_weights("{experiment}", "{purpose}"),
    log:
        log_file("fetch_init_weights", "{experiment}_{purpose}"),
    wildcard_constraints:
        purpose="baseline|retrain",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **resources_of("default"),
    params:
        model=model_of,
        model_name=lambda wildcards: grid.init_model_name(
            config, wildcards.experiment, wildcards.purpose
        ),
    script:
        "../workflow_scripts/fetch_timm_weights.py"


rule import_weights:
    input:
        manifest=manifest_of,
        checkpoint=lambda wildcards: config["experiments"][wildcards.experiment][
            "pretrained"
        ],
    output:
        weights=paths.baseline_weights("{experiment}"),
    log:
        log_file("import_weights", "{experiment}"),
    wildcard_constraints:
        experiment=one_of(grid.experiments_with_weights(config, "path")),
    priority: BASELINE_FIRST
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **resources_of("default"),
    params:
        model=model_of,
    script:
        "../workflow_scripts/import_weights.py"


rule train_baseline:
    input:
        unpack(
            lambda wildcards: grid.training_init_input(
                config, wildcards.experiment, "baseline"
            )
        ),
        manifest=manifest_of,
    output:
        weights=paths.baseline_weights("{experiment}"),
        summary=paths.model_file("{experiment}", "train_summary.json"),
    log:
        log_file("train_baseline", "{experiment}"),
    wildcard_constraints:
        experiment=one_of(grid.experiments_with_weights(config, "none")),
    priority: BASELINE_FIRST
    conda:
        CONDA_ENV
    threads: threads_of("train")
    resources:
        **resources_of("train"),
    params:
        model=model_of,
        recipe=lambda wildcards: config["experiments"][wildcards.experiment][
            "train_baseline"
        ],
        seed=config["seed"],
        execution=execution(kind="train"),
        # Not an output: Snakemake must not delete it when the job is killed.
        checkpoint=paths.model_file("{experiment}", "checkpoint.pt"),
        # A checkpoint written under other settings is not resumed.
        config_hash=lambda wildcards: grid.experiment_fingerprint(
            config, wildcards.experiment
        ),
    script:
        "../workflow_scripts/train_baseline.py"


rule evaluate_baseline:
    input:
        weights=paths.baseline_weights("{experiment}"),
        manifest=manifest_of,
    output:
        metrics=paths.model_file("{experiment}", "metrics.json"),
        predictions=paths.model_file("{experiment}", paths.PREDICTIONS),
    log:
        log_file("evaluate_baseline", "{experiment}"),
    conda:
        CONDA_ENV
    threads: threads_of("inference")
    resources:
        **resources_of("inference"),
    params:
        model=model_of,
        record=record_of,
        execution=execution(config["eval"]["batch_size"], kind="inference"),
    script:
        "../workflow_scripts/evaluate_baseline.py"
