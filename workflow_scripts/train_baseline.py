"""Rule train_baseline: train the experiment's baseline ViT on the train split, on the job's ranks
(patchinteract.training.jobs)."""

from patchinteract.ranks import launch
from patchinteract.runtime import job_of, logged_to
from patchinteract.training.jobs import train_baseline_job

# The ranks are fresh processes that import this file as their main module: only the job's own
# process runs it.
if __name__ == "__main__":
    with logged_to(snakemake.log[0]):
        execution = snakemake.params.execution
        launch(train_baseline_job, execution.ranks, execution.device, job_of(snakemake))
