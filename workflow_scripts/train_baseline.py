"""Rule train_baseline: train the experiment's baseline ViT on the train split, on the job's ranks
(patchinteract.jobs.training)."""

from patchinteract.jobs.training import train_baseline_job
from patchinteract.ranks import launch_job

if __name__ == "__main__":  # the ranks, fresh processes, import this file as their main module
    launch_job(train_baseline_job, snakemake)
