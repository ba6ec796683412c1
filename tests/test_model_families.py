"""The whole DAG on small timm ViTs of other families than the demo's (VisionTransformer variants, timm's Eva with
rotary embeddings, a Hugging Face checkpoint): every stage (baseline, stores, U, masks, every retraining branch,
tables, the figures that show model tokens, head and semantic analyses, the explorer) handles each model."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY_CONFIG, bokeh_data, repository_copy, run_from_root

pytestmark = pytest.mark.slow

SMALL = {"embed_dim": 32, "depth": 2, "num_heads": 2, "mlp_ratio": 2.0}
# experiment: (model, model_args beyond SMALL, prefix tokens)
FAMILIES = {
    "gap": ("VisionTransformer", {"class_token": False, "global_pool": "avg"}, 0),  # no prefix, average pool
    # (SigLIP's attention pool, global_pool "map", without a prefix: tests/test_head_importance.py and
    # tests/test_masked_vit.py)
    # (CLS + 4 registers behind a CLIP-style stem: tests/test_masked_vit.py; 5 prefix tokens: dinov3 below)
    "distilled": ("deit_tiny_distilled_patch16_224", {}, 2),  # CLS + distillation token, two heads
    # timm's Eva class: rotary position embeddings applied to q and k in every block
    "dinov3": ("vit_small_patch16_dinov3", {}, 5),  # RoPE (rotate-half), CLS + 4 registers, no absolute embedding
    # (EVA-02, RoPE beside an absolute embedding, SwiGLU: the same Eva adapter; each stage's seam on it in
    # tests/test_eva.py)
}


# The distilled family's baseline is a DeiT saved by Hugging Face transformers (a folder the test writes), converted
# to timm's distilled DeiT: the conversion runs through every stage at no extra experiment's cost.
HUGGING_FACE, CHECKPOINT = "distilled", "checkpoints/deit-tiny"


def hugging_face_checkpoint(folder) -> dict:
    """A random-weight DeiTForImageClassificationWithTeacher of the tiny sizes saved into ``folder``; the
    experiment settings that run it."""
    import patchinteract.compat  # noqa: F401  (the torchvision shim, before transformers imports torchvision)

    import transformers

    from patchinteract.models.huggingface import timm_settings

    config = transformers.DeiTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=16,
        patch_size=4, num_labels=10,
    )  # fmt: skip
    transformers.DeiTForImageClassificationWithTeacher(config).save_pretrained(folder)
    return timm_settings(json.loads((folder / "config.json").read_text())) | {"pretrained": str(folder)}


def family_config(checkpoint_folder) -> dict:
    """The tiny config with one experiment per family (the distilled one from a Hugging Face checkpoint): one
    seed, one α, the figures' β only those of the grid."""
    config = json.loads(json.dumps(TINY_CONFIG))
    tiny = config["experiments"].pop("tiny")
    for name, (model, args, _) in FAMILIES.items():
        config["experiments"][name] = tiny | {"model": model, "model_args": SMALL | args}
    hugging_face = {k: v for k, v in tiny.items() if k != "train_baseline"} | hugging_face_checkpoint(checkpoint_folder)
    assert hugging_face["model"] == FAMILIES[HUGGING_FACE][0]
    config["experiments"][HUGGING_FACE] = hugging_face
    config |= {"seeds": [0], "alphas": [0.5], "explorer": {"images": 6}, "figures": {"dip_betas": [0.2]}}
    config["pretraining"]["enabled"] = False  # the MAE on each family: tests/test_pretraining.py (CI time)
    return config


# The figures drawn from stores of one layout for every model (patch by patch, prefix tokens left out at
# capture): the tiny run of tests/test_workflow.py draws them. Each is a notebook job of ~10 s of CPU.
MODEL_INDEPENDENT_FIGURES = (
    "figure_patch_interactions", "figure_image_panels", "figure_winft_windows", "figure_accuracy_vs_interactions",
)  # fmt: skip


@pytest.fixture(scope="module")
def family_run(tmp_path_factory):
    root = repository_copy(tmp_path_factory.mktemp("families"))
    # 105 jobs: 4 minutes alone on 2 cores, more beside the other test files (a hang guard, not a budget)
    run_from_root(root, family_config(root / CHECKPOINT), "--omit-from", *MODEL_INDEPENDENT_FIGURES, timeout=1800)
    return root


def test_every_stage_runs_for_every_family(family_run):
    results = family_run / "results"
    runs = pd.read_parquet(results / "tables/runs.parquet")
    for name in FAMILIES:
        rows = runs[runs["experiment"] == name]
        assert sorted(rows["method"]) == ["awd", "awd_dip", "baseline", "vit", "winft"], name
        assert rows["top1"].between(0, 100).all(), name
        assert (results / f"{name}/explorer/index.html").is_file(), name
        assert len(list((results / f"{name}/explorer/data").glob("*.js"))) == 6, name
        for figure in ("fig3_attention_rows", "fig7_head_importance_val", "theta_masking"):
            assert (results / f"figures/{name}/{figure}.png").stat().st_size > 10_000, (name, figure)
        summary = pd.read_parquet(results / f"tables/head_summary_{name}_val.parquet")
        assert len(summary) == 4 and summary["images"].eq(20).all(), name


def test_the_hugging_face_baseline_is_its_checkpoint_converted(family_run):
    """The distilled family's baseline is the Hugging Face checkpoint's tensors under timm's keys (both heads,
    the distillation token), and the log says what was converted."""
    from safetensors.torch import load_file

    log = (family_run / f"results/logs/import_weights/{HUGGING_FACE}.log").read_text()
    assert "converted a Hugging Face deit checkpoint (35 tensors) to timm keys" in log
    baseline = load_file(family_run / f"results/{HUGGING_FACE}/model/baseline.safetensors")
    source = load_file(family_run / CHECKPOINT / "model.safetensors")
    attention = "deit.encoder.layer.1.attention.attention"
    qkv = torch.cat([source[f"{attention}.{part}.weight"] for part in ("query", "key", "value")])
    assert torch.equal(baseline["blocks.1.attn.qkv.weight"], qkv)
    assert torch.equal(baseline["head.weight"], source["cls_classifier.weight"])
    assert torch.equal(baseline["head_dist.weight"], source["distillation_classifier.weight"])
    assert torch.equal(baseline["dist_token"], source["deit.embeddings.distillation_token"])


def test_measures_without_a_cls_token_are_nan_and_the_rest_defined(family_run):
    """Without prefix tokens the pruning modes that prune CLS regions and the CLS-based measures do not
    exist: the tables hold modes 0, 1, 4 and NaN for cls_distance and the CLS pattern's layout."""
    for name, (_, _, prefix) in FAMILIES.items():
        heads = family_run / f"results/{name}/heads/val"
        importance = pd.read_parquet(heads / "head_importance.parquet")
        patterns = pd.read_parquet(heads / "attention_patterns.parquet")
        pruned = importance[importance["mode"] > 0]
        assert pruned[["prob", "pruned_prob", "jsd", "patch_distance"]].notna().all().all(), name
        assert patterns[["patch_x", "patch_y"]].notna().all().all(), name
        if prefix:
            assert sorted(importance["mode"].unique()) == [0, 1, 2, 3, 4, 5], name
            assert pruned["cls_distance"].notna().all() and patterns[["cls_x", "cls_y"]].notna().all().all(), name
        else:
            assert sorted(importance["mode"].unique()) == [0, 1, 4], name
            assert pruned["cls_distance"].isna().all() and patterns[["cls_x", "cls_y"]].isna().all().all(), name
        import zarr

        attention = zarr.open_group(family_run / f"results/{name}/attention/val.zarr", mode="r")
        assert attention.attrs["n_prefix_tokens"] == prefix and attention["attn"].shape[-1] == prefix + 16, name


@pytest.mark.parametrize("name", ["gap", "dinov3"])
def test_the_explorer_works_for_the_family_in_a_real_browser(family_run, browser, name):
    """The page of a model without prefix tokens (three pruning modes) and of one with registers: no console
    error, the importance views show the table's mode-1 values and every mode of the picked head."""
    from browser import console_errors, open_explorer, wait_for

    heads = family_run / f"results/{name}/heads/val"
    driver = browser

    def page(script, *args):
        return driver.execute_script(script, *args)

    def source(model_name):
        return bokeh_data(driver, model_name)

    open_explorer(driver, family_run / f"results/{name}/explorer/index.html")
    assert console_errors(driver) == []
    importance = pd.read_parquet(heads / "head_importance.parquet")
    importance = importance[importance["image_id"] == page("return PatchExplorer.state.image")]
    modes = sorted(importance["mode"].unique())
    whole = importance.query("mode == 1")
    np.testing.assert_allclose(source("importance_source")["pruned_prob"], whole["pruned_prob"], rtol=1e-6, atol=1e-9)
    page("Bokeh.documents[0].get_model_by_name('importance_source').selected.indices = [2]")
    wait_for(driver, "return PatchExplorer.state.head === 2", 10)
    layer, head = divmod(2, 2)
    shown = source("modes_source")
    # the modes' view shows the metric picked in it, first P_ij[y]
    expected = importance.query("layer == @layer and head == @head").sort_values("mode")["pruned_prob"]
    assert len(shown["mode"]) == len(modes) and shown["mode"][0].startswith("0")
    np.testing.assert_allclose(shown["value"], expected, rtol=1e-6, atol=1e-9)
    for mode in modes:  # the top-5 under every mode the model has
        page("Bokeh.documents[0].get_model_by_name('pruning_mode').value = arguments[0]", str(mode))
    for overlay in ("U row", "AWD window", "responsive field", "DIP dropped", "keypoints", "θ"):
        page("Bokeh.documents[0].get_model_by_name('overlay').value = arguments[0]", overlay)
    page("Bokeh.documents[0].get_model_by_name('pattern_kind').active = 1")
    assert console_errors(driver) == []
