"""Several processes for one job, with torch.distributed: each process is a rank, launched by torch's
elastic launcher (what ``torchrun --standalone`` runs) on one node, with its process group initialised
(NCCL on CUDA, gloo on CPU). One rank is a plain call in the job's own process.

torch is imported inside the functions: the Snakefile imports this layer's modules.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class Ranks:
    """This process's place among the job's ranks."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """Rank 0 writes checkpoints and outputs."""
        return self.rank == 0

    @classmethod
    def current(cls) -> Ranks:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    def device(self, requested: str):
        """The torch device of this rank: with several ranks on CUDA, GPU ``LOCAL_RANK`` of the job's."""
        import torch

        from patchinteract.runtime import select_device

        device = select_device(requested)
        if self.world > 1 and device.type == "cuda":
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", self.rank)))
        return device


def launch(entrypoint, ranks: int, device: str, *args):
    """``entrypoint(*args)`` in ``ranks`` processes (one: here) on ``device`` (the config's setting: NCCL
    where it is CUDA, gloo otherwise); returns rank 0's result.

    ``entrypoint`` must be importable by name (a module-level function) and ``args`` picklable: the
    ranks are fresh processes. A rank that fails fails the launch (ChildFailedError names it).
    """
    if ranks == 1:
        return entrypoint(*args)
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    from patchinteract.runtime import select_device

    backend = "nccl" if select_device(device).type == "cuda" else "gloo"

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=ranks,
        run_id=uuid.uuid4().hex,
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",  # a free port, as torchrun --standalone
        max_restarts=0,
        monitor_interval=0.2,
    )
    logging.getLogger(__name__).info("running on %d ranks (%s); each logs to <this log>.rank<r>", ranks, backend)
    return elastic_launch(config, run_rank)(backend, entrypoint, *args)[0]


def launch_job(entrypoint, snakemake) -> None:
    """A rule's script: ``entrypoint(job)`` on the job's ranks (``params.execution``), ``job`` being the
    script's job as plain data (:func:`patchinteract.runtime.job_of`), logged to the rule's log."""
    from patchinteract.runtime import job_of, logged_to

    with logged_to(snakemake.log[0]):
        execution = snakemake.params.execution
        launch(entrypoint, execution.ranks, execution.device, job_of(snakemake))


def run_rank(backend: str, entrypoint, *args):
    """One rank: join the process group, run ``entrypoint``, leave."""
    import torch.distributed as dist

    dist.init_process_group(backend)
    try:
        return entrypoint(*args)
    finally:
        dist.destroy_process_group()


def rank_range(size: int) -> range:
    """This rank's consecutive block of ``size`` positions (all of them with one rank): blocks in rank
    order cover the positions in order, so results gathered in rank order are in the order of one process."""
    ranks = Ranks.current()
    return range(ranks.rank * size // ranks.world, (ranks.rank + 1) * size // ranks.world)


def rank_block(dataset):
    """This rank's consecutive block of ``dataset`` (:func:`rank_range`; the dataset itself with one rank)."""
    if Ranks.current().world == 1:
        return dataset
    import torch

    return torch.utils.data.Subset(dataset, rank_range(len(dataset)))


def all_mean(value: float, device) -> float:
    """The mean of ``value`` over the ranks (the value itself with one rank)."""
    ranks = Ranks.current()
    if ranks.world == 1:
        return value
    import torch
    import torch.distributed as dist

    total = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return float(total.item()) / ranks.world


def any_rank(flag: bool, device) -> bool:
    """True on every rank when ``flag`` is true on any."""
    ranks = Ranks.current()
    if ranks.world == 1:
        return flag
    import torch
    import torch.distributed as dist

    value = torch.tensor([int(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def gathered(value) -> list:
    """Every rank's ``value`` (picklable), in rank order."""
    ranks = Ranks.current()
    if ranks.world == 1:
        return [value]
    import torch.distributed as dist

    values = [None] * ranks.world
    dist.all_gather_object(values, value)
    return values


def share_threads(threads: int) -> None:
    """This rank's share of the job's threads for torch (all of them with one rank)."""
    from patchinteract.runtime import torch_threads

    torch_threads(max(1, threads // Ranks.current().world))


@contextlib.contextmanager
def rank_log(path: str):
    """Where a rank logs: with one rank, the job's log (already open); with several, ``<log>.rank<r>``."""
    ranks = Ranks.current()
    if ranks.world == 1:
        yield logging.getLogger("patchinteract")
        return
    from patchinteract.runtime import logged_to

    with logged_to(f"{path}.rank{ranks.rank}") as log:
        yield log


def barrier() -> None:
    """Wait for every rank (nothing with one rank)."""
    if Ranks.current().world > 1:
        import torch.distributed as dist

        dist.barrier()


def from_main(value):
    """Rank 0's ``value`` on every rank (picklable)."""
    if Ranks.current().world == 1:
        return value
    import torch.distributed as dist

    values = [value]
    dist.broadcast_object_list(values, src=0)
    return values[0]
