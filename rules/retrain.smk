# Retraining jobs, one per branch: vit (no mask), awd_a<alpha> (windows),
# awd_dip_a<alpha>_b<beta> (windows and kept tokens), winft (window-free, eq. 8-13). Each writes
# results/<experiment>/retrain/<branch>/{metrics.json,model.safetensors} and keeps a
# checkpoint.pt there while it runs, so a job killed by SIGTERM resumes. config_hash covers every
# setting the branch reads: changing one reruns that branch (Snakemake's params rerun trigger).


rule retrain_vit:
    input:
        unpack(retrain_inputs),
    output:
        metrics=f"{RESULTS}/{{experiment}}/retrain/vit/metrics.json",
        weights=f"{RESULTS}/{{experiment}}/retrain/vit/model.safetensors",
    log:
        f"{LOGS}/retrain/{{experiment}}_vit.log",
    conda:
        CONDA_ENV
    threads: threads_of("train")
    resources:
        **resources_of("train"),
    params:
        method="vit",
        branch="vit",
        config_hash=branch_hash("vit"),
        alpha=None,
        beta=None,
        init=lambda wildcards: retrain_init(config, wildcards.experiment),
        checkpoint=f"{RESULTS}/{{experiment}}/retrain/vit/checkpoint.pt",
    script:
        "../workflow_scripts/retrain.py"


use rule retrain_vit as retrain_awd with:
    output:
        metrics=f"{RESULTS}/{{experiment}}/retrain/awd_a{{alpha}}/metrics.json",
        weights=f"{RESULTS}/{{experiment}}/retrain/awd_a{{alpha}}/model.safetensors",
    log:
        f"{LOGS}/retrain/{{experiment}}_awd_a{{alpha}}.log",
    params:
        method="awd",
        branch=awd_branch,
        config_hash=branch_hash(awd_branch),
        alpha=lambda wildcards: float(wildcards.alpha),
        beta=0.0,
        init=lambda wildcards: retrain_init(config, wildcards.experiment),
        checkpoint=f"{RESULTS}/{{experiment}}/retrain/awd_a{{alpha}}/checkpoint.pt",


use rule retrain_vit as retrain_awd_dip with:
    output:
        metrics=f"{RESULTS}/{{experiment}}/retrain/awd_dip_a{{alpha}}_b{{beta}}/metrics.json",
        weights=f"{RESULTS}/{{experiment}}/retrain/awd_dip_a{{alpha}}_b{{beta}}/model.safetensors",
    log:
        f"{LOGS}/retrain/{{experiment}}_awd_dip_a{{alpha}}_b{{beta}}.log",
    params:
        method="awd_dip",
        branch=awd_dip_branch,
        config_hash=branch_hash(awd_dip_branch),
        alpha=lambda wildcards: float(wildcards.alpha),
        beta=lambda wildcards: float(wildcards.beta),
        init=lambda wildcards: retrain_init(config, wildcards.experiment),
        checkpoint=f"{RESULTS}/{{experiment}}/retrain/awd_dip_a{{alpha}}_b{{beta}}/checkpoint.pt",


use rule retrain_vit as retrain_winft with:
    input:
        unpack(winft_inputs),
    output:
        metrics=f"{RESULTS}/{{experiment}}/retrain/winft/metrics.json",
        weights=f"{RESULTS}/{{experiment}}/retrain/winft/model.safetensors",
        figure=zarr_store(f"{RESULTS}/{{experiment}}/retrain/winft/figure_windows.zarr"),
    log:
        f"{LOGS}/retrain/{{experiment}}_winft.log",
    params:
        method="winft",
        branch="winft",
        config_hash=branch_hash("winft"),
        alpha=config["winft"]["alpha"],
        beta=config["winft"]["beta"],
        init=lambda wildcards: retrain_init(config, wildcards.experiment),
        checkpoint=f"{RESULTS}/{{experiment}}/retrain/winft/checkpoint.pt",
