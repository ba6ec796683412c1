"""Rule interaction_store: U (eq. 2-3) and dip_score from the attention store, with Dask."""

from patchinteract.interaction.interaction_store import compute_interaction_store
from patchinteract.runtime import logged_to
from patchinteract.stores.chunked import store_folder

with logged_to(snakemake.log[0]) as log:
    dask = snakemake.params.execution.dask
    path = compute_interaction_store(
        store_folder(snakemake.input.attention),
        store_folder(snakemake.output.store),
        dask_mode=dask["dask"],
        workers=dask["workers"],
        address=dask["scheduler_address"],
        slurm=dask["slurm"] | {"log_directory": snakemake.params.dask_logs},
        compression_level=snakemake.params.compression_level,
    )
    log.info("wrote %s", path)
