"""Rule pattern_autoencoder: train the convolutional autoencoder on every head's binarised patch matrix
(Li et al. Sec. 5.4) and write its weights and the bottleneck codes."""

from pathlib import Path

import zarr

from patchinteract.analyses.heads.autoencoder import train_pattern_autoencoder
from patchinteract.grid import fingerprint
from patchinteract.models.weights import save_weights
from patchinteract.runtime import logged_to, select_device, torch_threads
from patchinteract.stores.chunked import ArraySpec, store_folder, write_arrays
from patchinteract.stores.specs import IMAGE_ID

with logged_to(snakemake.log[0]) as log:
    params = snakemake.params
    torch_threads(snakemake.threads)
    store = zarr.open_group(store_folder(snakemake.input.store), mode="r")
    grid = tuple(store.attrs["grid"])
    model, codes, summary = train_pattern_autoencoder(
        store["patch_top"][:],
        grid[0] * grid[1],
        params.settings,
        seed=params.seed,
        device=select_device(params.execution.device),
        workers=params.execution.loader_workers,
        checkpoint=params.checkpoint,
        fingerprint=fingerprint(params.settings, params.top_share, params.seed, dict(store.attrs)),
    )
    save_weights(model, snakemake.output.weights)
    specs = {"codes": ArraySpec(codes.shape[1:], "float32", ("image", "layer", "head", "code"))} | IMAGE_ID
    attributes = dict(store.attrs) | {"autoencoder": params.settings, "final_loss": summary["final_loss"]}
    arrays = {"codes": codes, "image_id": store["image_id"][:]}
    write_arrays(store_folder(snakemake.output.codes), arrays, specs, attributes)
    Path(params.checkpoint).unlink(missing_ok=True)  # it only served to resume
    log.info("%d matrices, %d steps, final loss %.4f", summary["samples"], summary["steps"], summary["final_loss"])
