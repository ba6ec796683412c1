# Baseline weights (hub, local file, or trained here) and their evaluation.


localrules:
    fetch_timm_weights,
    fetch_init_weights,


rule fetch_timm_weights:
    output:
        weights=f"{RESULTS}/{{experiment}}/model/baseline.safetensors",
    log:
        f"{LOGS}/fetch_timm_weights/{{experiment}}.log",
    wildcard_constraints:
        experiment=one_of(experiments_by_weights("timm")),
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **resources_of("default"),
    params:
        model_name=lambda wildcards: config["experiments"][wildcards.experiment][
            "model"
        ],
    script:
        "../workflow_scripts/fetch_timm_weights.py"


rule fetch_init_weights:
    output:
        weights=f"{RESULTS}/{{experiment}}/weights/{{purpose}}_init.safetensors",
    log:
        f"{LOGS}/fetch_init_weights/{{experiment}}_{{purpose}}.log",
    wildcard_constraints:
        purpose="baseline|retrain",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **resources_of("default"),
    params:
        model_name=lambda wildcards: init_model_name(
            wildcards.experiment, wildcards.purpose
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
        weights=f"{RESULTS}/{{experiment}}/model/baseline.safetensors",
    log:
        f"{LOGS}/import_weights/{{experiment}}.log",
    wildcard_constraints:
        experiment=one_of(experiments_by_weights("path")),
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **resources_of("default"),
    script:
        "../workflow_scripts/import_weights.py"


rule train_baseline:
    input:
        unpack(baseline_init_weights),
        manifest=manifest_of,
    output:
        weights=f"{RESULTS}/{{experiment}}/model/baseline.safetensors",
        summary=f"{RESULTS}/{{experiment}}/model/train_summary.json",
    log:
        f"{LOGS}/train_baseline/{{experiment}}.log",
    wildcard_constraints:
        experiment=one_of(experiments_by_weights("none")),
    conda:
        CONDA_ENV
    threads: threads_of("train")
    resources:
        **resources_of("train"),
    params:
        # Not an output: Snakemake must not delete it when the job is killed.
        checkpoint=f"{RESULTS}/{{experiment}}/model/checkpoint.pt",
        # Changing a setting that the baseline depends on reruns it (params rerun trigger).
        config_hash=lambda wildcards: experiment_fingerprint(
            config, wildcards.experiment
        ),
    script:
        "../workflow_scripts/train_baseline.py"


rule evaluate_baseline:
    input:
        weights=f"{RESULTS}/{{experiment}}/model/baseline.safetensors",
        manifest=manifest_of,
    output:
        metrics=f"{RESULTS}/{{experiment}}/model/metrics.json",
    log:
        f"{LOGS}/evaluate_baseline/{{experiment}}.log",
    conda:
        CONDA_ENV
    threads: threads_of("inference")
    resources:
        **resources_of("inference"),
    script:
        "../workflow_scripts/evaluate_baseline.py"
