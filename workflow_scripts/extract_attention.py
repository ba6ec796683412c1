"""Rules attention_store, interaction_streaming, attention_figure_store and explorer_attention_store:
the baseline's attention (or U and dip_score) of a split or of its figure or explorer images, as Zarr, on
the job's ranks (patchinteract.jobs.inference)."""

from patchinteract.jobs.inference import attention_job
from patchinteract.ranks import launch_job

if __name__ == "__main__":  # the ranks, fresh processes, import this file as their main module
    launch_job(attention_job, snakemake)
