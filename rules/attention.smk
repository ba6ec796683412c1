# Attention of the baseline over a split, kept in a Zarr store (attention.store: zarr). With
# store none, rule attention_figure_store (rules/interaction.smk) keeps the Fig. 3 images' only.

if config["attention"]["store"] == "zarr":

    rule attention_store:
        input:
            weights=paths.baseline_weights("{experiment}"),
            manifest=manifest_of,
        output:
            store=zarr_target(paths.attention_store("{experiment}", "{split}")),
        log:
            log_file("attention_store", "{experiment}_{split}"),
        priority: RETRAINING_PATH
        conda:
            CONDA_ENV
        threads: threads_of("inference")
        resources:
            **resources_of("inference"),
        params:
            model=model_of,
            record=record_of,
            keep_attention=True,
            first_images=None,
            images_per_chunk=config["attention"]["images_per_chunk"],
            compression_level=config["attention"]["compression_level"],
            mantissa_bits=config["attention"]["mantissa_bits"],
            execution=execution(config["attention"]["batch_size"], kind="inference"),
        script:
            "../workflow_scripts/extract_attention.py"
