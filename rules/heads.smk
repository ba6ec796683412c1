# Head analyses of Li et al. (TVCG 2023) on each experiment's baseline, over heads.images images of
# heads.split: the head-attention store (k-hop strength, mean distance, CLS and binarised patch
# patterns) with its strength tables, importance by pruning, the pattern autoencoder, the pattern
# layouts and clusters, the image overview, the per-head summary table and the figures.
# Outputs under results/<experiment>/heads/<split>/ (paths.head_file); docs/analyses.md.


HEADS = config["heads"]

HEAD_STORE_PARAMS = dict(
    top_share=HEADS["top_share"],
    compression_level=config["attention"]["compression_level"],
)


# The analysed images (heads.sample) and which classes they are: every later head stage reads them.
rule head_sample:
    input:
        manifest=manifest_of,
        predictions=paths.model_file("{experiment}", paths.PREDICTIONS),
    output:
        images=head_file("sample_images.parquet"),
        classes=head_file("sample.parquet"),
    log:
        log_file("head_sample", "{experiment}_{split}"),
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **resources_of("default"),
    params:
        sample=HEADS["sample"],
        images=HEADS["images"],
        seed=config["seed"],
    script:
        "../workflow_scripts/head_sample.py"


if config["attention"]["store"] == "zarr":

    rule head_attention_store:
        input:
            attention=zarr_target(paths.attention_store("{experiment}", "{split}")),
            sample=head_file("sample_images.parquet"),
        output:
            store=zarr_target(head_file("attention.zarr")),
            strength=head_file("attention_strength.parquet"),
            head_strength=head_file("head_strength.parquet"),
        log:
            log_file("head_attention", "{experiment}_{split}"),
        conda:
            CONDA_ENV
        threads: threads_of("interaction")
        resources:
            **resources_of("interaction"),
        params:
            **HEAD_STORE_PARAMS,
            execution=execution(dask=config["interaction"]),
            dask_logs=f"{LOGS}/dask_workers/heads_{{experiment}}_{{split}}",
        script:
            "../workflow_scripts/head_attention.py"

else:

    rule head_attention_streaming:
        input:
            weights=paths.baseline_weights("{experiment}"),
            manifest=manifest_of,
            sample=head_file("sample_images.parquet"),
        output:
            store=zarr_target(head_file("attention.zarr")),
            strength=head_file("attention_strength.parquet"),
            head_strength=head_file("head_strength.parquet"),
        log:
            log_file("head_attention", "{experiment}_{split}"),
        conda:
            CONDA_ENV
        threads: threads_of("inference")
        resources:
            **resources_of("inference"),
        params:
            **HEAD_STORE_PARAMS,
            model=model_of,
            record=record_of,
            execution=execution(config["attention"]["batch_size"], kind="inference"),
        script:
            "../workflow_scripts/head_attention.py"


rule head_importance:
    input:
        weights=paths.baseline_weights("{experiment}"),
        manifest=manifest_of,
        sample=head_file("sample_images.parquet"),
    output:
        rows=head_file("head_importance.parquet"),
        images=head_file("head_importance_images.parquet"),
    log:
        log_file("head_importance", "{experiment}_{split}"),
    conda:
        CONDA_ENV
    threads: threads_of("inference")
    resources:
        **resources_of("inference"),
    params:
        model=model_of,
        variants_per_pass=HEADS["variants_per_pass"],
        activation=HEADS["activation"],
        execution=execution(HEADS["batch_images"], kind="inference"),
    script:
        "../workflow_scripts/head_importance.py"


rule pattern_autoencoder:
    input:
        store=lambda wildcards: zarr_target(
            paths.head_file(wildcards.experiment, wildcards.split, "attention.zarr")
        ),
    output:
        weights=head_file("pattern_autoencoder.safetensors"),
        codes=zarr_target(head_file("pattern_codes.zarr")),
    log:
        log_file("pattern_autoencoder", "{experiment}_{split}"),
    conda:
        CONDA_ENV
    threads: threads_of("autoencoder")
    resources:
        **resources_of("autoencoder"),
    params:
        settings=HEADS["autoencoder"],
        top_share=HEADS["top_share"],
        seed=config["seed"],
        checkpoint=head_file("pattern_autoencoder_checkpoint.pt"),
        execution=execution(),
    script:
        "../workflow_scripts/pattern_autoencoder.py"


rule attention_patterns:
    input:
        store=lambda wildcards: zarr_target(
            paths.head_file(wildcards.experiment, wildcards.split, "attention.zarr")
        ),
        codes=zarr_target(head_file("pattern_codes.zarr")),
    output:
        patterns=head_file("attention_patterns.parquet"),
        clusters=head_file("pattern_clusters.parquet"),
    log:
        log_file("attention_patterns", "{experiment}_{split}"),
    conda:
        CONDA_ENV
    threads: threads_of("interaction")
    resources:
        **resources_of("interaction"),
    params:
        perplexity=HEADS["perplexity"],
        tsne_iterations=HEADS["tsne_iterations"],
        clusters=HEADS["clusters"],
        seed=config["seed"],
    script:
        "../workflow_scripts/attention_patterns.py"


rule image_overview:
    input:
        rows=head_file("head_importance.parquet"),
        images=head_file("head_importance_images.parquet"),
    output:
        overview=head_file("image_overview.parquet"),
    log:
        log_file("image_overview", "{experiment}_{split}"),
    conda:
        CONDA_ENV
    threads: threads_of("default")
    resources:
        **resources_of("default"),
    params:
        metric=HEADS["overview_metric"],
        perplexity=HEADS["perplexity"],
        tsne_iterations=HEADS["tsne_iterations"],
        seed=config["seed"],
    script:
        "../workflow_scripts/image_overview.py"


rule head_summary:
    input:
        importance=head_file("head_importance.parquet"),
        head_strength=head_file("head_strength.parquet"),
        patterns=head_file("attention_patterns.parquet"),
        clusters=head_file("pattern_clusters.parquet"),
    output:
        table=paths.table_file("head_summary_{experiment}_{split}", ".parquet"),
    log:
        log_file("head_summary", "{experiment}_{split}"),
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **resources_of("default"),
    params:
        **UNCERTAINTY,
        top_k=config["heads"]["top_k"],
    script:
        "../workflow_scripts/head_summary.py"


HEAD_FIGURES = (
    "fig7_head_importance",
    "head_pruning_modes",
    "fig8_head_entropy",
    "fig12_pattern_layouts",
    "fig13_pattern_clusters",
)


rule figure_heads:
    input:
        importance=head_file("head_importance.parquet"),
        summary=rules.head_summary.output.table,
        head_strength=head_file("head_strength.parquet"),
        patterns=head_file("attention_patterns.parquet"),
        clusters=head_file("pattern_clusters.parquet"),
        notebook=notebook_path("head_analyses"),
    output:
        **figure_outputs(
            "head_analyses", HEAD_FIGURES, "Head analyses", suffix="_{split}"
        ),
    log:
        log_file("figures", "{experiment}_{split}_head_analyses"),
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **resources_of("default"),
    params:
        # Paths (derived from input and output); settings in `settings`, the rerun trigger.
        paths=lambda wildcards, input, output: {
            "importance": input.importance,
            "summary": input.summary,
            "head_strength": input.head_strength,
            "patterns": input.patterns,
            "clusters": input.clusters,
            "out_dir": str(Path(output.pdfs[0]).parent),
            "suffix": f"_{wildcards.split}",
        },
    script:
        "../workflow_scripts/run_notebook.py"
