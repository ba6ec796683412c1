"""Rule evaluate_baseline: top-1/top-5 of the baseline on the val split, as JSON, and its per-image
predictions, on the job's ranks (patchinteract.jobs.inference)."""

from patchinteract.jobs.inference import evaluate_baseline_job
from patchinteract.ranks import launch_job

if __name__ == "__main__":  # the ranks, fresh processes, import this file as their main module
    launch_job(evaluate_baseline_job, snakemake)
