"""Rule pretrain_mae: one MAE pre-training run (mask schedule random or guided, one seed) of the
experiment's ViT from random weights, its k-NN curve from round 0 (the encoder as initialised), on the
job's ranks (patchinteract.jobs.training)."""

from patchinteract.jobs.training import pretrain_job
from patchinteract.ranks import launch_job

if __name__ == "__main__":  # the ranks, fresh processes, import this file as their main module
    launch_job(pretrain_job, snakemake)
