# Attention of the baseline over a split, kept in a Zarr store (attention.store: zarr). With
# store none, rule attention_figure_store (rules/interaction.smk) keeps the Fig. 3 images' only.

if config["attention"]["store"] == "zarr":

    rule attention_store:
        input:
            weights=f"{RESULTS}/{{experiment}}/model/baseline.safetensors",
            manifest=manifest_of,
        output:
            store=zarr_store(f"{RESULTS}/{{experiment}}/attention/{{split}}.zarr"),
        log:
            f"{LOGS}/attention_store/{{experiment}}_{{split}}.log",
        conda:
            CONDA_ENV
        threads: threads_of("inference")
        resources:
            **resources_of("inference"),
        params:
            keep_attention=True,
            first_images=None,
        script:
            "../workflow_scripts/extract_attention.py"
