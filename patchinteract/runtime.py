"""How a job runs: its log file, its threads and device, mixed precision, and the library on the
PYTHONPATH of every job. torch is imported inside the functions that need it: the Snakefile imports
this module, and jobs that never compute with torch should not pay for it (2 s)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path


@contextlib.contextmanager
def logged_to(log_path: str | Path | None):
    """Send logging, warnings and progress bars (stderr) to the rule's log file."""
    handle = None
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handle = open(log_path, "a", buffering=1)
        previous, sys.stderr = sys.stderr, handle
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True
    )
    logging.captureWarnings(True)
    try:
        yield logging.getLogger("patchinteract")
    except BaseException:
        logging.getLogger("patchinteract").exception("failed")
        raise
    finally:
        if handle is not None:
            sys.stderr = previous
            handle.close()


def torch_threads(threads: int) -> None:
    """Use the cores the scheduler gave the job, not every core of the node."""
    import torch

    torch.set_num_threads(max(1, int(threads)))


def select_device(requested: str = "auto"):
    """The torch device of the config's ``device`` (auto: CUDA when there is one, else the CPU)."""
    import torch

    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def autocast(device, enabled: bool | None = None):
    """bf16 autocast, by default on CUDA only (bf16 matmul on CPU is slow and changes results)."""
    import torch

    enabled = device.type == "cuda" if enabled is None else enabled
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def share_library_with_jobs(repository: str) -> None:
    """Put the repository (where ``patchinteract/`` lives) on the PYTHONPATH that jobs inherit."""
    paths = [repository, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))


@dataclass(frozen=True)
class Execution:
    """How a job runs, not what it computes: the device, DataLoader workers, the batch size of
    inference, for the Dask stage its scheduler (interaction.dask, workers, scheduler_address,
    slurm), whether training keeps decoded images in memory (data.cache_images), and the ranks
    (processes, one per GPU) a training job runs on (resources.train.ranks).

    Rules pass it as one params value. Snakemake's params rerun trigger compares only params of
    builtin types, so changing one of these settings reruns nothing (tests/test_config.py checks it);
    every setting that can change a result is a plain params value instead.
    """

    device: str = "auto"
    loader_workers: int = 0
    batch_size: int = 1
    dask: dict = field(default_factory=dict)
    cache_images: bool = False
    ranks: int = 1

    def dask_settings(self, log_directory: str) -> dict:
        """The Dask settings as stores.compute.store_with_dask takes them (mode, workers, address, slurm),
        with Slurm worker logs in ``log_directory``."""
        return {
            "mode": self.dask["dask"],
            "workers": self.dask["workers"],
            "address": self.dask["scheduler_address"],
            "slurm": self.dask["slurm"] | {"log_directory": log_directory},
        }


def job_of(snakemake) -> dict:
    """A script's job as plain data (what a rank in a fresh process can receive): params, input and
    output by name, wildcards, the log and the threads."""

    def named(items) -> dict:
        return dict(items.items())

    return {
        "params": named(snakemake.params),
        "input": named(snakemake.input),
        "output": named(snakemake.output),
        "wildcards": named(snakemake.wildcards),
        "log": snakemake.log[0],
        "threads": snakemake.threads,
    }
