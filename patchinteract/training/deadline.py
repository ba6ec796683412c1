"""A training job's time limit, kept without a signal: the job knows when it ends, measures how long a
step and a checkpoint write take, and stops with a checkpoint while the next step and the write still fit.

Slurm's SIGTERM at the limit races the checkpoint write: Snakemake runs the script under ``bash -c``,
bash dies of the signal at once, the job step ends and the Python process is killed, on a GPU node often
in the middle of writing a checkpoint of a gigabyte. Stopping before the limit needs no signal at all
(SIGTERM handling stays for preemption and ``scancel``). The job's end comes from Slurm (``squeue``) where
the job runs under Slurm, or from ``PATCHINTERACT_JOB_END`` (seconds since the epoch) for another
scheduler; without either, training has no deadline.
"""

from __future__ import annotations

import collections
import datetime
import logging
import os
import subprocess
import time

log = logging.getLogger(__name__)

JOB_END_VARIABLE = "PATCHINTERACT_JOB_END"
# What the job's end must leave after the checkpoint: the process's exit and the job step's end.
MARGIN_SECONDS = 15.0
# The slowest of the last steps stands for the next one (data loading varies from step to step).
STEPS_REMEMBERED = 20


def testing_delay(what: str) -> float:
    """Seconds by which the tests slow each training step or checkpoint write (``what``: ``STEP``,
    ``CHECKPOINT``), from ``PATCHINTERACT_TEST_<what>_DELAY``: a time-limit test whose timing is set by these
    waits and not by the machine's speed (0 unless set)."""
    return float(os.environ.get(f"PATCHINTERACT_TEST_{what}_DELAY", 0))


def slurm_job_end(job_id: str) -> float | None:
    """The end of Slurm job ``job_id`` by its time limit (seconds since the epoch), or None if Slurm does
    not say (no limit, the command missing or failing)."""
    try:
        answer = subprocess.run(
            ["squeue", "--noheader", "--jobs", job_id, "--format", "%e"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return None
    try:  # local time, as the controller prints it ("2026-12-06T19:40:05"; "N/A" without a limit)
        return datetime.datetime.fromisoformat(answer.stdout.strip()).timestamp()
    except ValueError:
        return None


def job_end_time(environ=os.environ) -> tuple[float, str] | None:
    """When this job ends and who says so: ``PATCHINTERACT_JOB_END``, else Slurm for a Slurm job."""
    if environ.get(JOB_END_VARIABLE):
        return float(environ[JOB_END_VARIABLE]), JOB_END_VARIABLE
    if environ.get("SLURM_JOB_ID"):
        end = slurm_job_end(environ["SLURM_JOB_ID"])
        return (end, f"Slurm job {environ['SLURM_JOB_ID']}") if end is not None else None
    return None


class Deadline:
    """Whether a training run must stop now: the job's ``end`` less the slowest recent step, the slowest
    checkpoint write and :data:`MARGIN_SECONDS`. Without an end it never says stop."""

    def __init__(self, end: float | None, margin: float = MARGIN_SECONDS):
        self.end, self.margin = end, margin
        self.steps: collections.deque[float] = collections.deque(maxlen=STEPS_REMEMBERED)
        self.checkpoint_seconds: float | None = None

    @classmethod
    def of_this_job(cls) -> Deadline:
        found = job_end_time()
        if found is None:
            return cls(None)
        end, source = found
        log.info(
            "the job ends at %s (%s): training stops with a checkpoint before then",
            datetime.datetime.fromtimestamp(end).isoformat(timespec="seconds"),
            source,
        )
        return cls(end)

    def step_took(self, seconds: float) -> None:
        self.steps.append(seconds)

    def checkpoint_took(self, seconds: float) -> None:
        self.checkpoint_seconds = max(self.checkpoint_seconds or 0.0, seconds)

    @property
    def wants_a_measured_checkpoint(self) -> bool:
        """A deadline whose checkpoint time is not known yet (the run writes one at once to know it)."""
        return self.end is not None and self.checkpoint_seconds is None

    def reached(self, now: float | None = None) -> bool:
        if self.end is None or not self.steps:
            return False
        now = time.time() if now is None else now
        return now + max(self.steps) + (self.checkpoint_seconds or 0.0) + self.margin >= self.end

    def describe(self, now: float | None = None) -> str:
        left = self.end - (time.time() if now is None else now)
        return (
            f"checkpoint written {left:.0f} s before the job's end (a step takes up to {max(self.steps):.2f} s, "
            f"a checkpoint {self.checkpoint_seconds or 0.0:.1f} s)"
        )
