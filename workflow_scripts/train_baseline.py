"""Rule train_baseline: train the experiment's baseline ViT on the train split, on the job's ranks
(patchinteract.training.jobs)."""

from patchinteract.ranks import launch
from patchinteract.runtime import job_of, logged_to
from patchinteract.training.jobs import train_baseline_job

with logged_to(snakemake.log[0]):
    execution = snakemake.params.execution
    launch(train_baseline_job, execution.ranks, execution.device, job_of(snakemake))
