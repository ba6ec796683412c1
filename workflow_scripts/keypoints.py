"""Rule keypoints: SIFT keypoints per patch of every image of a split, on the evaluation view (Wu et
al. Sec. 2.2), and the figure images' views with their keypoints."""

from patchinteract.analyses.semantics.keypoints import (
    keypoint_counter,
    keypoint_summary,
    write_figure_keypoints,
    write_keypoint_store,
)
from patchinteract.data.manifest import number_of_classes, read_manifest, split_dataset
from patchinteract.models.transforms import eval_view
from patchinteract.models.vit import build_model
from patchinteract.runtime import logged_to
from patchinteract.stores.chunked import store_folder

with logged_to(snakemake.log[0]) as log:
    params, split = snakemake.params, snakemake.wildcards.split
    # the untrained model of the experiment: its input size, crop and patch grid define the view
    model = build_model(params.model, number_of_classes(read_manifest(snakemake.input.manifest)[0]))
    views = split_dataset(snakemake.input.manifest, split, eval_view(model))
    counter = keypoint_counter(model, params.keypoints)
    path = write_keypoint_store(
        views,
        store_folder(snakemake.output.store),
        counter,
        threads=snakemake.threads,
        compression_level=params.compression_level,
        attributes=counter.attributes() | {"split": split},
    )
    write_figure_keypoints(
        views, store_folder(snakemake.output.figure), counter, params.figure_images, params.compression_level
    )
    log.info("%s: %s", split, keypoint_summary(path))
