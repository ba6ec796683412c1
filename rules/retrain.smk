# Retraining jobs, one per branch and seed: vit (no mask), awd_a<alpha> (windows),
# awd_dip_a<alpha>_b<beta> (windows and kept tokens), winft (window-free, eq. 8-13), each once per
# seed of `seeds`. Each writes results/<experiment>/retrain/<branch>/seed<k>/{metrics.json,
# predictions.parquet,model.safetensors} and keeps a checkpoint.pt there while it runs, so a job
# killed by SIGTERM resumes. The baseline and the masks are shared by all seeds: only retraining
# varies. Every setting a branch reads is a param; config_hash (their hash, the seed included) also
# keys the checkpoint and goes into metrics.json.


rule retrain_vit:
    input:
        unpack(retrain_inputs),
    output:
        metrics=branch_output(layout.VIT_BRANCH, "metrics.json"),
        predictions=branch_output(layout.VIT_BRANCH, layout.PREDICTIONS),
        weights=branch_output(layout.VIT_BRANCH, "model.safetensors"),
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
        branch=layout.VIT_BRANCH,
        config_hash=branch_hash(layout.VIT_BRANCH),
        alpha=None,
        beta=None,
        settings=branch_settings("vit"),
        model=model_of,
        record=record_of,
        recipe=config["retrain"].get("recipe"),
        seed=retrain_seed,
        init=lambda wildcards: weights_source(
            retrain_init(config, wildcards.experiment)
        ),
        execution=execution(config["eval"]["batch_size"]),
        checkpoint=branch_output(layout.VIT_BRANCH, "checkpoint.pt"),
    script:
        "../workflow_scripts/retrain.py"


use rule retrain_vit as retrain_awd with:
    output:
        metrics=branch_output(layout.awd_branch("{alpha}"), "metrics.json"),
        predictions=branch_output(layout.awd_branch("{alpha}"), layout.PREDICTIONS),
        weights=branch_output(layout.awd_branch("{alpha}"), "model.safetensors"),
    log:
        log_file("retrain", "{experiment}_awd_a{alpha}_seed{seed}"),
    params:
        method="awd",
        branch=awd_branch,
        config_hash=branch_hash(awd_branch),
        alpha=lambda wildcards: float(wildcards.alpha),
        beta=0.0,
        settings=branch_settings("awd"),
        model=model_of,
        record=record_of,
        recipe=config["retrain"].get("recipe"),
        seed=retrain_seed,
        init=lambda wildcards: weights_source(
            retrain_init(config, wildcards.experiment)
        ),
        execution=execution(config["eval"]["batch_size"]),
        checkpoint=branch_output(layout.awd_branch("{alpha}"), "checkpoint.pt"),


use rule retrain_vit as retrain_awd_dip with:
    output:
        metrics=branch_output(
            layout.awd_dip_branch("{alpha}", "{beta}"), "metrics.json"
        ),
        predictions=branch_output(
            layout.awd_dip_branch("{alpha}", "{beta}"), layout.PREDICTIONS
        ),
        weights=branch_output(
            layout.awd_dip_branch("{alpha}", "{beta}"), "model.safetensors"
        ),
    log:
        log_file("retrain", "{experiment}_awd_dip_a{alpha}_b{beta}_seed{seed}"),
    params:
        method="awd_dip",
        branch=awd_dip_branch,
        config_hash=branch_hash(awd_dip_branch),
        alpha=lambda wildcards: float(wildcards.alpha),
        beta=lambda wildcards: float(wildcards.beta),
        settings=branch_settings("awd_dip"),
        model=model_of,
        record=record_of,
        recipe=config["retrain"].get("recipe"),
        seed=retrain_seed,
        init=lambda wildcards: weights_source(
            retrain_init(config, wildcards.experiment)
        ),
        execution=execution(config["eval"]["batch_size"]),
        checkpoint=branch_output(
            layout.awd_dip_branch("{alpha}", "{beta}"), "checkpoint.pt"
        ),


use rule retrain_vit as retrain_winft with:
    input:
        unpack(winft_inputs),
    output:
        metrics=branch_output(layout.WINFT_BRANCH, "metrics.json"),
        predictions=branch_output(layout.WINFT_BRANCH, layout.PREDICTIONS),
        weights=branch_output(layout.WINFT_BRANCH, "model.safetensors"),
        figure=zarr_target(branch_output(layout.WINFT_BRANCH, "figure_windows.zarr")),
    log:
        log_file("retrain", "{experiment}_winft_seed{seed}"),
    params:
        method="winft",
        branch=layout.WINFT_BRANCH,
        config_hash=branch_hash(layout.WINFT_BRANCH),
        alpha=config["winft"]["alpha"],
        beta=config["winft"]["beta"],
        settings=branch_settings("winft"),
        model=model_of,
        record=record_of,
        recipe=config["retrain"].get("recipe"),
        seed=retrain_seed,
        init=lambda wildcards: weights_source(
            retrain_init(config, wildcards.experiment)
        ),
        execution=execution(config["eval"]["batch_size"]),
        checkpoint=branch_output(layout.WINFT_BRANCH, "checkpoint.pt"),
