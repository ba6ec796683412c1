"""Rules retrain_vit, retrain_awd, retrain_awd_dip, retrain_winft: retrain one seed of a branch and evaluate
it (metrics.json and per-image predictions), on the job's ranks (patchinteract.jobs.training)."""

from patchinteract.jobs.training import retrain_job
from patchinteract.ranks import launch_job

if __name__ == "__main__":  # the ranks, fresh processes, import this file as their main module
    launch_job(retrain_job, snakemake)
