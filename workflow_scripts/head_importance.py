"""Rule head_importance: every head of the baseline pruned in six modes (Li et al. eq. 3-6) on the head
analyses' sample of a split, on the job's ranks (patchinteract.jobs.inference)."""

from patchinteract.jobs.inference import head_importance_job
from patchinteract.ranks import launch_job

if __name__ == "__main__":  # the ranks, fresh processes, import this file as their main module
    launch_job(head_importance_job, snakemake)
