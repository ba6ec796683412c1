"""What every Dask worker process of the stage sets up. A module of its own: importing ``distributed``
(~0.3 s) is paid only where a cluster is used, not by every job that imports the stores."""

from __future__ import annotations

from distributed import WorkerPlugin


class SingleThreadedTorch(WorkerPlugin):
    """Dask runs one task per core; torch's own thread pool on top would oversubscribe them.
    A worker plugin, so it also reaches workers that join later."""

    def setup(self, worker) -> None:
        import torch

        torch.set_num_threads(1)
