# The explorer: one offline page per experiment of coordinated views over the head analyses (Li et
# al.), Ma et al.'s maps and masks and, where the semantics stage runs, the SIFT keypoints (Wu et
# al.): results/<experiment>/explorer/index.html with data/<image_id>.js beside it (docs/explorer.md).


EXPLORER = config["explorer"]

if config["attention"]["store"] == "none":

    # The attention of the explorer's images (the first explorer.images of the head analyses' images).
    use rule interaction_streaming as explorer_attention_store with:
        input:
            weights=paths.baseline_weights("{experiment}"),
            manifest=manifest_of,
            sample=head_file("sample_images.parquet"),
        output:
            store=zarr_target(paths.explorer_attention_store("{experiment}", "{split}")),
        log:
            log_file("explorer_attention_store", "{experiment}_{split}"),
        priority: 0
        params:
            model=model_of,
            record=record_of,
            keep_attention=True,
            first_images=None,
            explorer_images=EXPLORER["images"],
            images_per_chunk=config["attention"]["images_per_chunk"],
            compression_level=config["attention"]["compression_level"],
            execution=execution(config["attention"]["batch_size"], kind="inference"),


rule explorer:
    input:
        unpack(lambda wildcards: grid.explorer_inputs(config, wildcards.experiment)),
    output:
        page=f"{paths.explorer_folder('{experiment}')}/index.html",
        data=directory(f"{paths.explorer_folder('{experiment}')}/data"),
    log:
        log_file("explorer", "{experiment}"),
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **resources_of("default"),
    params:
        images=EXPLORER["images"],
        attention_layers=EXPLORER["attention_layers"],
        image_size=lambda wildcards: config["experiments"][wildcards.experiment][
            "img_size"
        ],
        alphas=[value_label(alpha) for alpha in config["alphas"]],
        betas=[value_label(beta) for beta in config["betas"]],
        fields=[
            f"a{value_label(alpha)}_b{value_label(beta)}"
            for alpha in config["dip_alphas"]
            for beta in config["betas"]
        ],
    script:
        "../workflow_scripts/explorer.py"
