"""Running the workflow through the Slurm profile on the test cluster (conftest's ``slurm_cluster``), and
reading what Slurm recorded: shared by the Slurm tests."""

import copy
import re
import subprocess
from pathlib import Path

from conftest import REPO, TINY_CONFIG, run_snakemake

PROFILE = REPO / "profiles" / "slurm"
# The profile as a user runs it, with faster polling: the tiny jobs take seconds, not hours. (The
# plugin polls after 2 s, then waits 10 s longer after each poll that finds no job finished.)
SLURM_ARGS = (
    "--profile",
    str(PROFILE),
    "--cores",
    "8",
    "--slurm-init-seconds-before-status-checks",
    "2",
    "--seconds-between-status-checks",
    "2",
)
SUBMITTED = re.compile(r"submitted with SLURM jobid (\d+) \(log: (\S+)\)")


def cluster_config(**resources) -> dict:
    """The tiny config (one retraining seed) with per-kind resources that fit the test node; training asks
    for a GPU."""
    config = copy.deepcopy(TINY_CONFIG) | {"seeds": [0]}
    config["resources"] = {
        "default": {"cpus": 1, "mem_mb": 1000, "runtime": 10},
        "inference": {"cpus": 1, "mem_mb": 1000, "runtime": 10},
        "interaction": {"cpus": 1, "mem_mb": 1000, "runtime": 10},
        "train": {"cpus": 1, "mem_mb": 1000, "runtime": 10, "gpus": 1},
    } | resources
    return config


def submitted_jobs(output: str) -> list[tuple[str, str, Path]]:
    """(Slurm job id, rule, Slurm log) of every job the run submitted."""
    jobs = []
    for job_id, log in SUBMITTED.findall(output):
        rule = next(part[len("rule_") :] for part in Path(log).parts if part.startswith("rule_"))
        jobs.append((job_id, rule, Path(log)))
    return jobs


def accounting(job_ids) -> dict[str, dict]:
    """sacct's record (State, AllocTRES, Timelimit) of each job, from slurmdbd."""
    out = subprocess.run(
        ["sacct", "-X", "-P", "-n", "-j", ",".join(job_ids), "-o", "JobID,JobName,State,AllocTRES,Timelimit"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    records = {}
    for line in out.splitlines():
        job_id, name, state, tres, limit = line.split("|")
        records[job_id] = {"name": name, "state": state, "tres": tres, "timelimit": limit}
    return records


def run_on_slurm(directory: Path, config: dict, *args: str, check: bool = True):
    result = run_snakemake(directory, config, *SLURM_ARGS, *args, check=check)
    return result, submitted_jobs(result.stdout + result.stderr)
