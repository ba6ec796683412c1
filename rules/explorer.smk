# The explorer: one offline page per experiment of coordinated views over the head analyses (Li et
# al.), Ma et al.'s maps and masks and, where the semantics stage runs, the SIFT keypoints (Wu et
# al.): results/<experiment>/explorer/index.html with data/<image_id>.js beside it (docs/explorer.md).


def explorer_inputs(wildcards):
    """Every store and table the explorer page of an experiment reads (split: heads.split)."""
    experiment, split = wildcards.experiment, config["heads"]["split"]
    attention = (
        paths.attention_store(experiment, split)
        if config["attention"]["store"] == "zarr"
        else paths.explorer_attention_store(experiment, split)
    )
    inputs = {
        "manifest": manifest_of(wildcards),
        "attention": zarr_target(attention),
        "interaction": zarr_target(paths.interaction_store(experiment, split)),
    }
    inputs |= {
        f"window_{value_label(alpha)}": zarr_target(
            paths.window_store(experiment, split, alpha)
        )
        for alpha in config["alphas"]
    }
    inputs |= {
        f"keep_{value_label(beta)}": zarr_target(
            paths.keep_store(experiment, split, beta)
        )
        for beta in config["betas"]
    }
    inputs |= {
        f"fields_a{value_label(alpha)}_b{value_label(beta)}": zarr_target(
            paths.field_store(experiment, split, alpha, beta)
        )
        for alpha in config["dip_alphas"]
        for beta in config["betas"]
    }
    inputs |= {
        name: paths.head_file(experiment, split, f"{name}.parquet")
        for name in (
            "head_importance",
            "image_overview",
            "head_strength",
            "attention_strength",
            "attention_patterns",
        )
    }
    if config["semantics"]["enabled"] and split in config["semantics"]["splits"]:
        inputs |= {
            name: zarr_target(paths.semantics_file(experiment, split, f"{name}.zarr"))
            for name in ("keypoints", "semantics")
        }
    return inputs


def explorers():
    """The explorer page of every experiment, when the page and the head analyses are enabled."""
    if not (config["explorer"]["enabled"] and config["heads"]["enabled"]):
        return []
    return [
        f"{paths.explorer_folder(experiment)}/index.html"
        for experiment in config["experiments"]
    ]


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
            execution=execution(config["attention"]["batch_size"]),


rule explorer:
    input:
        unpack(explorer_inputs),
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
