# Retraining jobs, one per branch and seed: vit (no mask), awd_a<alpha> (windows),
# awd_dip_a<alpha>_b<beta> (windows and kept tokens), winft (window-free, eq. 8-13), each once per
# seed of `seeds`. Each writes results/<experiment>/retrain/<branch>/seed<k>/{metrics.json,
# predictions.parquet,model.safetensors} and keeps a checkpoint.pt there while it runs, so a job
# killed by SIGTERM resumes. The baseline and the masks are shared by all seeds: only retraining
# varies. Every setting a branch reads is a param; config_hash (their hash, the seed included) also
# keys the checkpoint and goes into metrics.json.


rule retrain_vit:
    input:
        unpack(
            lambda wildcards: grid.retraining_inputs(
                config, wildcards.experiment, "vit"
            )
        ),
    output:
        metrics=paths.branch_file(
            "{experiment}", paths.VIT_BRANCH, "{seed}", "metrics.json"
        ),
        predictions=paths.branch_file(
            "{experiment}", paths.VIT_BRANCH, "{seed}", paths.PREDICTIONS
        ),
        weights=paths.branch_file(
            "{experiment}", paths.VIT_BRANCH, "{seed}", "model.safetensors"
        ),
    log:
        log_file("retrain", "{experiment}_vit_seed{seed}"),
    priority: RETRAINING_PATH
    conda:
        CONDA_ENV
    threads: threads_of("train")
    resources:
        **resources_of("train"),
    params:
        method="vit",
        branch=paths.VIT_BRANCH,
        config_hash=lambda wildcards: grid.retrain_fingerprint(
            config, wildcards.experiment, paths.VIT_BRANCH, int(wildcards.seed)
        ),
        alpha=None,
        beta=None,
        settings=grid.branch_settings(config, "vit"),
        model=model_of,
        record=record_of,
        recipe=config["retrain"].get("recipe"),
        seed=lambda wildcards: int(wildcards.seed),
        init=lambda wildcards: grid.weights_source(
            grid.retrain_init(config, wildcards.experiment)
        ),
        execution=execution(config["eval"]["batch_size"], kind="train"),
        checkpoint=paths.branch_file(
            "{experiment}", paths.VIT_BRANCH, "{seed}", "checkpoint.pt"
        ),
        # Derived from the inputs (it takes `input`): the input trigger covers the stores.
        stores=lambda wildcards, input: grid.branch_stores(
            config, wildcards.experiment, "vit"
        ),
    script:
        "../workflow_scripts/retrain.py"


# The other branches: the same rule with their inputs, outputs, log and the params that differ.


use rule retrain_vit as retrain_awd with:
    input:
        unpack(
            lambda wildcards: grid.retraining_inputs(
                config, wildcards.experiment, "awd", wildcards.alpha
            )
        ),
    output:
        metrics=paths.branch_file(
            "{experiment}", paths.awd_branch("{alpha}"), "{seed}", "metrics.json"
        ),
        predictions=paths.branch_file(
            "{experiment}", paths.awd_branch("{alpha}"), "{seed}", paths.PREDICTIONS
        ),
        weights=paths.branch_file(
            "{experiment}", paths.awd_branch("{alpha}"), "{seed}", "model.safetensors"
        ),
    log:
        log_file("retrain", "{experiment}_awd_a{alpha}_seed{seed}"),
    params:
        method="awd",
        branch=lambda wildcards: paths.awd_branch(wildcards.alpha),
        config_hash=lambda wildcards: grid.retrain_fingerprint(
            config,
            wildcards.experiment,
            paths.awd_branch(wildcards.alpha),
            int(wildcards.seed),
        ),
        alpha=mask_alpha,
        beta=0.0,
        settings=grid.branch_settings(config, "awd"),
        checkpoint=paths.branch_file(
            "{experiment}", paths.awd_branch("{alpha}"), "{seed}", "checkpoint.pt"
        ),
        stores=lambda wildcards, input: grid.branch_stores(
            config, wildcards.experiment, "awd", wildcards.alpha
        ),


use rule retrain_vit as retrain_awd_dip with:
    input:
        unpack(
            lambda wildcards: grid.retraining_inputs(
                config,
                wildcards.experiment,
                "awd_dip",
                wildcards.alpha,
                wildcards.beta,
            )
        ),
    output:
        metrics=paths.branch_file(
            "{experiment}",
            paths.awd_dip_branch("{alpha}", "{beta}"),
            "{seed}",
            "metrics.json",
        ),
        predictions=paths.branch_file(
            "{experiment}",
            paths.awd_dip_branch("{alpha}", "{beta}"),
            "{seed}",
            paths.PREDICTIONS,
        ),
        weights=paths.branch_file(
            "{experiment}",
            paths.awd_dip_branch("{alpha}", "{beta}"),
            "{seed}",
            "model.safetensors",
        ),
    log:
        log_file("retrain", "{experiment}_awd_dip_a{alpha}_b{beta}_seed{seed}"),
    params:
        method="awd_dip",
        branch=lambda wildcards: paths.awd_dip_branch(wildcards.alpha, wildcards.beta),
        config_hash=lambda wildcards: grid.retrain_fingerprint(
            config,
            wildcards.experiment,
            paths.awd_dip_branch(wildcards.alpha, wildcards.beta),
            int(wildcards.seed),
        ),
        alpha=mask_alpha,
        beta=mask_beta,
        settings=grid.branch_settings(config, "awd_dip"),
        checkpoint=paths.branch_file(
            "{experiment}",
            paths.awd_dip_branch("{alpha}", "{beta}"),
            "{seed}",
            "checkpoint.pt",
        ),
        stores=lambda wildcards, input: grid.branch_stores(
            config, wildcards.experiment, "awd_dip", wildcards.alpha, wildcards.beta
        ),


use rule retrain_vit as retrain_winft with:
    input:
        unpack(
            lambda wildcards: grid.retraining_inputs(
                config, wildcards.experiment, "winft"
            )
        ),
    output:
        metrics=paths.branch_file(
            "{experiment}", paths.WINFT_BRANCH, "{seed}", "metrics.json"
        ),
        predictions=paths.branch_file(
            "{experiment}", paths.WINFT_BRANCH, "{seed}", paths.PREDICTIONS
        ),
        weights=paths.branch_file(
            "{experiment}", paths.WINFT_BRANCH, "{seed}", "model.safetensors"
        ),
        figure=zarr_target(
            paths.branch_file(
                "{experiment}", paths.WINFT_BRANCH, "{seed}", "figure_windows.zarr"
            )
        ),
    log:
        log_file("retrain", "{experiment}_winft_seed{seed}"),
    params:
        method="winft",
        branch=paths.WINFT_BRANCH,
        config_hash=lambda wildcards: grid.retrain_fingerprint(
            config, wildcards.experiment, paths.WINFT_BRANCH, int(wildcards.seed)
        ),
        alpha=config["winft"]["alpha"],
        beta=config["winft"]["beta"],
        settings=grid.branch_settings(config, "winft"),
        checkpoint=paths.branch_file(
            "{experiment}", paths.WINFT_BRANCH, "{seed}", "checkpoint.pt"
        ),
        stores=lambda wildcards, input: grid.branch_stores(
            config, wildcards.experiment, "winft"
        ),
