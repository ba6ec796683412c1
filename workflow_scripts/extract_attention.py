"""Rules attention_store and interaction_streaming: run the baseline over a split and keep
its attention (Zarr) or, with attention.store: none, only U and dip_score."""

from patchinteract.extraction import write_attention_store, write_interaction_store_streaming
from patchinteract.models import select_device
from patchinteract.workflow import eval_dataset, load_baseline, logged_to, provenance, torch_threads

with logged_to(snakemake.log[0]) as log:
    config, experiment, split = snakemake.config, snakemake.wildcards.experiment, snakemake.wildcards.split
    torch_threads(snakemake.threads)
    model = load_baseline(config, experiment, snakemake.input.weights, snakemake.input.manifest)
    settings = config["attention"]
    options = {}
    if snakemake.params.keep_attention:
        write, options["chunk_setting"] = write_attention_store, settings["images_per_chunk"]
    else:
        write = write_interaction_store_streaming
    path = write(
        model,
        eval_dataset(model, snakemake.input.manifest, split),
        snakemake.output.store,
        device=select_device(config["device"]),
        batch_size=settings["batch_size"],
        workers=config["data"]["loader_workers"],
        compression_level=settings["compression_level"],
        **options,
        attributes={
            "experiment": experiment,
            "split": split,
            "model": config["experiments"][experiment]["model"],
            **provenance(config, experiment),
        },
    )
    log.info("wrote %s", path)
