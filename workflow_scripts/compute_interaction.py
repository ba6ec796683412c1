"""Rule interaction_store: U (eq. 2-3) and dip_score from the attention store, with Dask."""

from patchinteract.interaction_store import compute_interaction_store
from patchinteract.stores import store_folder
from patchinteract.workflow import logged_to

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
