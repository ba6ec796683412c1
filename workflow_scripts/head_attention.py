"""Rules head_attention_store and head_attention_streaming: the head-attention store (Li et al.) of the
head analyses' sample of a split and its strength tables, on the job's ranks (patchinteract.jobs.inference)."""

from patchinteract.jobs.inference import head_attention_job
from patchinteract.ranks import launch_job

if __name__ == "__main__":  # the ranks, fresh processes, import this file as their main module
    launch_job(head_attention_job, snakemake)
