"""Rule interaction_store: U (eq. 2-3) and dip_score from the attention store, with Dask."""

from patchinteract.interaction.store import compute_interaction_store
from patchinteract.runtime import logged_to
from patchinteract.stores.chunked import store_folder

with logged_to(snakemake.log[0]) as log:
    settings = snakemake.config["interaction"]
    path = compute_interaction_store(
        store_folder(snakemake.input.attention),
        store_folder(snakemake.output.store),
        dask_mode=settings["dask"],
        workers=settings["workers"],
        address=settings["scheduler_address"],
        slurm=settings["slurm"] | {"log_directory": snakemake.params.dask_logs},
        compression_level=snakemake.config["attention"]["compression_level"],
    )
    log.info("wrote %s", path)
