"""Every path under results/, in one place; no config is read here (what a config means is
:mod:`patchinteract.grid`; branch names come from their kinds, :mod:`patchinteract.training.branch_kinds`).

Rules, input functions, scripts and tables build paths only through these
functions. Each takes values or Snakemake wildcard patterns: ``window_store(
"{experiment}", "{split}", "{alpha}")`` is a rule's output pattern,
``window_store("digits_p4", "val", 0.1)`` a concrete path (numbers are written
with :func:`value_label`).
"""

from __future__ import annotations

RESULTS = "results"
LOGS = f"{RESULTS}/logs"
TABLE_NAMES = ("runs", "table1_awd", "table2_awd_dip", "table3_winft", "table4_transfer", "comparisons")
PREDICTIONS = "predictions.parquet"  # per-image predictions, beside every metrics.json
SPLITS = ("train", "val")


def value_label(value: float) -> str:
    """How an α or β appears in file names: 0.1 -> '0.1', 1.0 -> '1'."""
    return f"{value:g}"


def label_of(value: float | str) -> str:
    """A number's label; a string (a label or a wildcard pattern) as it is."""
    return value if isinstance(value, str) else value_label(value)


def zarr_target(store: str) -> str:
    """A Zarr store as a rule's input or output: its root metadata file ``<store>/zarr.json``.

    As a directory() output the store would get Snakemake's .snakemake_timestamp file,
    which zarr warns about whenever the store is listed. Scripts open
    :func:`patchinteract.stores.chunked.store_folder` of it.
    """
    return f"{store}/zarr.json"


# --------------------------------------------------------------------------- branches


def seed_folder(seed: int | str) -> str:
    """The folder of one retraining seed of a branch: seed0, seed1, ..."""
    return f"seed{seed}"


# --------------------------------------------------------------------------- datasets and models


def dataset_images(dataset: str) -> str:
    return f"{RESULTS}/datasets/{dataset}/images"


def manifest(dataset: str) -> str:
    return f"{RESULTS}/datasets/{dataset}/manifest.parquet"


def mean_colour(dataset: str) -> str:
    """The data set's mean colour over its train split (semantics.masking.fill: dataset_mean)."""
    return f"{RESULTS}/datasets/{dataset}/mean_colour.json"


def model_file(experiment: str, name: str) -> str:
    """Files of the baseline: baseline.safetensors, metrics.json, predictions.parquet, train_summary.json,
    checkpoint.pt."""
    return f"{RESULTS}/{experiment}/model/{name}"


def baseline_weights(experiment: str) -> str:
    return model_file(experiment, "baseline.safetensors")


def init_weights(experiment: str, purpose: str) -> str:
    """Hub weights fetched as the start of baseline training or retraining (purpose baseline | retrain)."""
    return f"{RESULTS}/{experiment}/weights/{purpose}_init.safetensors"


# --------------------------------------------------------------------------- stores


def attention_store(experiment: str, split: str) -> str:
    return f"{RESULTS}/{experiment}/attention/{split}.zarr"


def figure_attention_store(experiment: str, split: str) -> str:
    """The attention of Fig. 3's images only (attention.store: none)."""
    return f"{RESULTS}/{experiment}/attention/{split}_figures.zarr"


def interaction_store(experiment: str, split: str) -> str:
    return f"{RESULTS}/{experiment}/interaction/{split}.zarr"


def window_store(experiment: str, split: str, alpha: float | str) -> str:
    return f"{RESULTS}/{experiment}/masks/{split}/window_a{label_of(alpha)}.zarr"


def keep_store(experiment: str, split: str, beta: float | str) -> str:
    return f"{RESULTS}/{experiment}/masks/{split}/keep_b{label_of(beta)}.zarr"


def field_store(experiment: str, split: str, alpha: float | str, beta: float | str) -> str:
    return f"{RESULTS}/{experiment}/masks/{split}/fields_a{label_of(alpha)}_b{label_of(beta)}.zarr"


# --------------------------------------------------------------------------- retraining, tables, figures


def head_file(experiment: str, split: str, name: str) -> str:
    """Outputs of the head analyses (Li et al.) of an experiment's split: attention.zarr (the head-attention
    store), attention_strength.parquet, head_strength.parquet, head_importance.parquet,
    head_importance_images.parquet, pattern_autoencoder.safetensors, pattern_codes.zarr,
    attention_patterns.parquet, pattern_clusters.parquet, image_overview.parquet."""
    return f"{RESULTS}/{experiment}/heads/{split}/{name}"


def semantics_file(experiment: str, split: str, name: str) -> str:
    """Outputs of the semantic analyses (Wu et al.) of an experiment's split: keypoints.zarr,
    figure_keypoints.zarr, semantics.zarr, theta.parquet, theta_masking.parquet (val)."""
    return f"{RESULTS}/{experiment}/semantics/{split}/{name}"


def pretraining_file(experiment: str, schedule: str, seed: int | str, name: str) -> str:
    """Files of one MAE pre-training run (Wu et al. Sec. 5.2) of a mask schedule and seed: curve.parquet,
    metrics.json, predictions.parquet, encoder.safetensors, decoder.safetensors, checkpoint.pt."""
    return f"{RESULTS}/{experiment}/pretraining/{schedule}/{seed_folder(seed)}/{name}"


def restoration_file(experiment: str, name: str) -> str:
    """The restoration experiment (Wu et al. Sec. 2) with an experiment's MAEs: restoration.parquet (per
    schedule and choice), restoration_images.parquet (per image), restoration_examples.zarr (figure)."""
    return f"{RESULTS}/{experiment}/pretraining/{name}"


def explorer_folder(experiment: str) -> str:
    """The explorer page of an experiment: index.html, and data/<image_id>.js for each of its images."""
    return f"{RESULTS}/{experiment}/explorer"


def explorer_attention_store(experiment: str, split: str) -> str:
    """The attention of the explorer's images only (attention.store: none)."""
    return f"{RESULTS}/{experiment}/attention/{split}_explorer.zarr"


def branch_file(experiment: str, branch: str, seed: int | str, name: str) -> str:
    """Files of one seed of a retrained branch: metrics.json, predictions.parquet, model.safetensors,
    checkpoint.pt, figure_windows.zarr (WinFT)."""
    return f"{RESULTS}/{experiment}/retrain/{branch}/{seed_folder(seed)}/{name}"


def table_file(name: str, suffix: str) -> str:
    return f"{RESULTS}/tables/{name}{suffix}"


def figure_file(name: str, suffix: str, experiment: str | None = None) -> str:
    """A figure of one experiment, or with no experiment one over all of them."""
    folder = f"{RESULTS}/figures" if experiment is None else f"{RESULTS}/figures/{experiment}"
    return f"{folder}/{name}{suffix}"


def executed_notebook(name: str, experiment: str | None = None) -> str:
    prefix = "" if experiment is None else f"{experiment}_"
    return f"{RESULTS}/figures/notebooks/{prefix}{name}.ipynb"


def log_file(rule: str, name: str) -> str:
    return f"{LOGS}/{rule}/{name}.log"
