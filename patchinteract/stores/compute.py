"""Where the Dask stage runs: threads, a LocalCluster, Dask workers as Slurm jobs (dask-jobqueue), or a
running cluster (``interaction.dask``)."""

from __future__ import annotations

import contextlib
import logging
import sys

import dask

log = logging.getLogger(__name__)


DASK_MODES = ("threads", "local", "slurm")


@contextlib.contextmanager
def limited_torch_threads(count: int):
    # Only in a process that uses torch (U does, θ does not): importing it would cost ~2 s.
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def slurm_cluster(workers: int, slurm: dict):
    """``workers`` Slurm jobs of ``slurm['cores']`` single-threaded Dask worker processes each."""
    from dask_jobqueue import SLURMCluster

    cluster = SLURMCluster(
        cores=slurm["cores"],
        processes=slurm["cores"],
        memory=f"{slurm['memory_mb']}MB",
        walltime=f"{slurm['walltime']}:00",
        queue=slurm.get("partition"),
        account=slurm.get("account"),
        interface=slurm.get("interface"),
        job_name="patchinteract-dask",
        log_directory=slurm.get("log_directory"),
        scheduler_options={"dashboard_address": ":0"},
        python=sys.executable,
    )
    cluster.scale(jobs=workers)
    return cluster


@contextlib.contextmanager
def dask_cluster(mode: str, workers: int, address: str | None = None, slurm: dict | None = None):
    """Threads in this process; a LocalCluster of ``workers`` processes; ``workers`` Slurm jobs of
    Dask workers (``slurm``: the interaction.slurm settings); or the cluster at ``address``."""
    if address:
        from distributed import Client, progress

        from patchinteract.stores.dask_workers import SingleThreadedTorch

        with Client(address) as client:
            log.info("Dask: connected to %s (%s)", address, client.dashboard_link)
            client.register_plugin(SingleThreadedTorch())  # also on workers that join later
            yield progress
    elif mode == "threads":
        from dask.diagnostics import ProgressBar

        # dt bounds the wait when the bar stops; minimum hides it for short computations.
        with (
            dask.config.set(scheduler="threads", num_workers=workers),
            limited_torch_threads(1),
            ProgressBar(minimum=5, dt=0.1),
        ):
            yield None
    elif mode in ("local", "slurm"):
        from distributed import Client, LocalCluster, progress

        from patchinteract.stores.dask_workers import SingleThreadedTorch

        if mode == "local":
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True)
        elif not slurm:
            raise ValueError("interaction.dask slurm needs interaction.slurm (cores, memory_mb, walltime)")
        else:
            cluster = slurm_cluster(workers, slurm)
        with cluster, Client(cluster) as client:
            log.info("Dask: %s (%s); waiting for the first worker", cluster, cluster.dashboard_link)
            client.wait_for_workers(1)
            client.register_plugin(SingleThreadedTorch())  # also on workers that join later
            yield progress
    else:
        raise ValueError(f"interaction.dask must be one of {DASK_MODES}, got '{mode}'")


def store_with_dask(
    sources: list, targets: list, *, mode: str, workers: int, address: str | None = None, slurm: dict | None = None
) -> None:
    """Compute lazy dask arrays ``sources`` into the Zarr arrays ``targets`` on the :func:`dask_cluster`
    of the settings, with a progress bar. Sources must be chunked like their targets along the image
    axis, so that no two tasks write one chunk."""
    import dask.array as da

    with dask_cluster(mode, workers, address, slurm) as show_progress:
        stored = da.store(sources, targets, lock=False, compute=False)
        if show_progress is not None:  # distributed: progress bar over the futures
            stored = dask.persist(stored)[0]
            show_progress(stored)
        dask.compute(stored)
