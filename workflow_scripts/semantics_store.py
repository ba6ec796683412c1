"""Rules semantics_store and semantics_streaming: θ and the focus index (Wu et al. eq. 2-5) of every
image of a split and the long table theta.parquet, on the job's ranks (patchinteract.jobs.inference)."""

from patchinteract.jobs.inference import semantics_job
from patchinteract.ranks import launch_job

if __name__ == "__main__":  # the ranks, fresh processes, import this file as their main module
    launch_job(semantics_job, snakemake)
