"""Rule mae_restoration: with every pre-trained MAE of an experiment, the reconstruction error on val when
r of the patches are masked among the keypoint patches, the non-keypoint patches or at random (Wu et al.
Sec. 2, Fig. 2), per image and summarised with intervals, and the figure's examples (spread over the classes)."""

import pandas as pd

from patchinteract.analyses.semantics.mae_pretraining import (
    example_specs,
    load_mae,
    restoration_errors,
    restoration_examples,
)
from patchinteract.analyses.semantics.semantics_store import read_keypoints
from patchinteract.models.transforms import eval_dataset
from patchinteract.report.pretraining_tables import restoration_summary
from patchinteract.report.retraining_tables import Uncertainty
from patchinteract.runtime import logged_to, select_device, torch_threads
from patchinteract.stores.chunked import store_folder, write_arrays

with logged_to(snakemake.log[0]) as log:
    params, inputs, execution = snakemake.params, snakemake.input, snakemake.params.execution
    torch_threads(snakemake.threads)
    device, rows, maes = select_device(execution.device), [], []
    for (schedule, seed), encoder, decoder in zip(params.runs, inputs.encoders, inputs.decoders, strict=True):
        mae = load_mae(params.model, inputs.manifest, params.decoder, encoder, decoder)
        dataset = eval_dataset(mae.encoder, inputs.manifest, "val")
        keypoint = read_keypoints(store_folder(inputs.keypoints), dataset.image_ids, "the val split")[:] > 0
        errors = restoration_errors(
            mae, dataset, keypoint, params.mask_ratio, params.seed, device, execution.batch_size
        )
        rows.append(errors.assign(schedule=schedule, seed=seed))
        maes.append(mae)
    images = pd.concat(rows, ignore_index=True)
    images.to_parquet(snakemake.output.images, index=False)
    table = restoration_summary(images, Uncertainty.from_params(params))
    table.to_parquet(snakemake.output.table, index=False)
    log.info("\n%s", table.round(4).to_string(index=False))
    examples = restoration_examples(
        maes, dataset, keypoint, params.mask_ratio, params.seed, params.figure_images, device
    )
    channels, size = examples["image"].shape[1], examples["image"].shape[-1]
    specs = example_specs(len(maes), channels, size, keypoint.shape[1])
    attributes = {"runs": [list(run) for run in params.runs], "grid": list(maes[0].grid), "patch": maes[0].patch}
    write_arrays(
        store_folder(snakemake.output.examples), examples, specs, attributes | {"mask_ratio": params.mask_ratio}
    )
