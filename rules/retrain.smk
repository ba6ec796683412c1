# Retraining jobs: one rule per kind of branch, made from the kind's declaration
# (patchinteract/training/branch_kinds.py): retrain_vit (no mask), retrain_awd (awd_a<alpha>, windows),
# retrain_awd_dip (awd_dip_a<alpha>_b<beta>, windows and kept tokens), retrain_winft (window-free,
# eq. 8-13), and retrain_<name> for each kind declared in a file of retrain.kind_modules. One job per
# branch and seed of `seeds` writes results/<experiment>/retrain/<branch>/seed<k>/{metrics.json,
# predictions.parquet,model.safetensors} (and the files its kind adds) and keeps a checkpoint.pt there
# while it runs, so a job killed by SIGTERM resumes. The baseline and the masks are shared by all seeds:
# only retraining varies. Every setting a branch reads is a param; config_hash (their hash, the seed
# included) also keys the checkpoint and goes into metrics.json.


for kind in grid.branch_kinds(config).values():

    rule:
        name:
            f"retrain_{kind.name}"
        input:
            unpack(
                lambda wildcards, kind=kind: grid.retraining_inputs(
                    config,
                    wildcards.experiment,
                    kind,
                    grid.branch_point(config, kind, wildcards),
                )
            ),
        output:
            **grid.retraining_outputs(kind),
        log:
            log_file("retrain", f"{{experiment}}_{kind.pattern}_seed{{seed}}"),
        priority: RETRAINING_PATH
        conda:
            CONDA_ENV
        threads: threads_of("train")
        resources:
            **resources_of("train"),
        params:
            **grid.retraining_params(config, kind),
            model=model_of,
            record=record_of,
            recipe=config["retrain"].get("recipe"),
            seed=lambda wildcards: int(wildcards.seed),
            init=lambda wildcards: grid.weights_source(
                grid.retrain_init(config, wildcards.experiment)
            ),
            execution=execution(config["eval"]["batch_size"], kind="train"),
        script:
            "../workflow_scripts/retrain.py"
