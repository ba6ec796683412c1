"""Rule theta_masking: the baseline's val top-1 with patches masked by θ_i rank or at random (Wu et al.
Sec. 5.1, Fig. 8), on the job's ranks (patchinteract.jobs.inference)."""

from patchinteract.jobs.inference import theta_masking_job
from patchinteract.ranks import launch_job

if __name__ == "__main__":  # the ranks, fresh processes, import this file as their main module
    launch_job(theta_masking_job, snakemake)
