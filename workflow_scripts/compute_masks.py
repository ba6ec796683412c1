"""Rules window_masks, token_masks and responsive_fields: mask stores from an interaction store."""

from patchinteract.masks.mask_stores import write_field_store, write_keep_store, write_window_store
from patchinteract.runtime import logged_to
from patchinteract.stores.chunked import store_folder

with logged_to(snakemake.log[0]) as log:
    level = snakemake.params.compression_level
    kind = snakemake.params.kind
    interaction, out = store_folder(snakemake.input.interaction), store_folder(snakemake.output.store)
    if kind == "window":
        path = write_window_store(interaction, out, snakemake.params.alpha, level)
    elif kind == "keep":
        path = write_keep_store(interaction, out, snakemake.params.beta, level)
    else:
        path = write_field_store(
            interaction, store_folder(snakemake.input.keep), out, snakemake.params.alpha, snakemake.params.beta, level
        )
    log.info("wrote %s", path)
