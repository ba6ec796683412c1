# Retraining jobs, one per branch and seed: vit (no mask), awd_a<alpha> (windows),
# awd_dip_a<alpha>_b<beta> (windows and kept tokens), winft (window-free, eq. 8-13), each once per
# seed of `seeds`. Each writes results/<experiment>/retrain/<branch>/seed<k>/{metrics.json,
# predictions.parquet,model.safetensors} and keeps a checkpoint.pt there while it runs, so a job
# killed by SIGTERM resumes. The baseline and the masks are shared by all seeds: only retraining
# varies. Every setting a branch reads is a param; config_hash (their hash, the seed included) also
# keys the checkpoint and goes into metrics.json.


def branch_output(branch, name):
    """A retraining rule's file: results/{experiment}/retrain/<branch>/seed{seed}/<name>."""
    return paths.branch_file("{experiment}", branch, "{seed}", name)


def retrain_seed(wildcards):
    return int(wildcards.seed)


def branch_hash(branch):
    """Params function: the config hash of one seed of a branch (a name, or a function of the wildcards)."""

    def config_hash(wildcards):
        name = branch(wildcards) if callable(branch) else branch
        return grid.retrain_fingerprint(
            config, wildcards.experiment, name, retrain_seed(wildcards)
        )

    return config_hash


def awd_branch(wildcards):
    return paths.awd_branch(wildcards.alpha)


def awd_dip_branch(wildcards):
    return paths.awd_dip_branch(wildcards.alpha, wildcards.beta)


# The mask stores a branch reads, by split and kind of store (window, keep, fields).


def vit_stores(wildcards):
    return {split: {} for split in paths.SPLITS}


def awd_stores(wildcards):
    return {
        split: {
            "window": paths.window_store(wildcards.experiment, split, wildcards.alpha)
        }
        for split in paths.SPLITS
    }


def awd_dip_stores(wildcards):
    """Windows and kept tokens, and on val the fields, whose O counts kept patches only."""
    experiment, alpha, beta = wildcards.experiment, wildcards.alpha, wildcards.beta
    stores = {
        split: {
            "window": paths.window_store(experiment, split, alpha),
            "keep": paths.keep_store(experiment, split, beta),
        }
        for split in paths.SPLITS
    }
    stores["val"]["fields"] = paths.field_store(experiment, "val", alpha, beta)
    return stores


def winft_stores(wildcards):
    """The responsive fields of WinFT's (α, β): its ground truth."""
    alpha, beta = config["winft"]["alpha"], config["winft"]["beta"]
    return {
        split: {"fields": paths.field_store(wildcards.experiment, split, alpha, beta)}
        for split in paths.SPLITS
    }


def retrain_inputs(stores):
    """Input function: the manifest, the initial weights and the branch's mask stores."""

    def inputs(wildcards):
        targets = [
            zarr_target(store)
            for kinds in stores(wildcards).values()
            for store in kinds.values()
        ]
        return {"manifest": manifest_of(wildcards), "stores": targets} | init_input(
            wildcards.experiment, "retrain"
        )

    return inputs


def store_folders(stores):
    """Params function: the branch's mask stores by split and kind. It takes ``input`` because it is
    derived from the inputs: Snakemake's input trigger covers the stores, its params trigger does not.
    """

    def folders(wildcards, input):
        return stores(wildcards)

    return folders


def retrain_metrics(name="metrics.json"):
    """metrics.json (or, with name, another file) of every seed of every retrained branch."""
    return [
        paths.branch_file(experiment, branch, seed, name)
        for experiment in config["experiments"]
        for branch in grid.retrain_branches(config, experiment)
        for seed in config["seeds"]
    ]


rule retrain_vit:
    input:
        unpack(retrain_inputs(vit_stores)),
    output:
        metrics=branch_output(paths.VIT_BRANCH, "metrics.json"),
        predictions=branch_output(paths.VIT_BRANCH, paths.PREDICTIONS),
        weights=branch_output(paths.VIT_BRANCH, "model.safetensors"),
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
        config_hash=branch_hash(paths.VIT_BRANCH),
        alpha=None,
        beta=None,
        settings=grid.branch_settings(config, "vit"),
        model=model_of,
        record=record_of,
        recipe=config["retrain"].get("recipe"),
        seed=retrain_seed,
        init=lambda wildcards: grid.weights_source(
            grid.retrain_init(config, wildcards.experiment)
        ),
        execution=execution(config["eval"]["batch_size"]),
        checkpoint=branch_output(paths.VIT_BRANCH, "checkpoint.pt"),
        stores=store_folders(vit_stores),
    script:
        "../workflow_scripts/retrain.py"


# The other branches: the same rule with their outputs, log, inputs and the params that differ.


use rule retrain_vit as retrain_awd with:
    input:
        unpack(retrain_inputs(awd_stores)),
    output:
        metrics=branch_output(paths.awd_branch("{alpha}"), "metrics.json"),
        predictions=branch_output(paths.awd_branch("{alpha}"), paths.PREDICTIONS),
        weights=branch_output(paths.awd_branch("{alpha}"), "model.safetensors"),
    log:
        log_file("retrain", "{experiment}_awd_a{alpha}_seed{seed}"),
    params:
        method="awd",
        branch=awd_branch,
        config_hash=branch_hash(awd_branch),
        alpha=mask_alpha,
        beta=0.0,
        settings=grid.branch_settings(config, "awd"),
        checkpoint=branch_output(paths.awd_branch("{alpha}"), "checkpoint.pt"),
        stores=store_folders(awd_stores),


use rule retrain_vit as retrain_awd_dip with:
    input:
        unpack(retrain_inputs(awd_dip_stores)),
    output:
        metrics=branch_output(paths.awd_dip_branch("{alpha}", "{beta}"), "metrics.json"),
        predictions=branch_output(
            paths.awd_dip_branch("{alpha}", "{beta}"), paths.PREDICTIONS
        ),
        weights=branch_output(
            paths.awd_dip_branch("{alpha}", "{beta}"), "model.safetensors"
        ),
    log:
        log_file("retrain", "{experiment}_awd_dip_a{alpha}_b{beta}_seed{seed}"),
    params:
        method="awd_dip",
        branch=awd_dip_branch,
        config_hash=branch_hash(awd_dip_branch),
        alpha=mask_alpha,
        beta=mask_beta,
        settings=grid.branch_settings(config, "awd_dip"),
        checkpoint=branch_output(
            paths.awd_dip_branch("{alpha}", "{beta}"), "checkpoint.pt"
        ),
        stores=store_folders(awd_dip_stores),


use rule retrain_vit as retrain_winft with:
    input:
        unpack(retrain_inputs(winft_stores)),
    output:
        metrics=branch_output(paths.WINFT_BRANCH, "metrics.json"),
        predictions=branch_output(paths.WINFT_BRANCH, paths.PREDICTIONS),
        weights=branch_output(paths.WINFT_BRANCH, "model.safetensors"),
        figure=zarr_target(branch_output(paths.WINFT_BRANCH, "figure_windows.zarr")),
    log:
        log_file("retrain", "{experiment}_winft_seed{seed}"),
    params:
        method="winft",
        branch=paths.WINFT_BRANCH,
        config_hash=branch_hash(paths.WINFT_BRANCH),
        alpha=config["winft"]["alpha"],
        beta=config["winft"]["beta"],
        settings=grid.branch_settings(config, "winft"),
        checkpoint=branch_output(paths.WINFT_BRANCH, "checkpoint.pt"),
        stores=store_folders(winft_stores),
