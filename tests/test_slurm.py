"""The Slurm profile on a real one-node cluster (tests/slurm/cluster.sh): jobs, GPUs, failures,
one-branch reruns, Dask workers as Slurm jobs (the time limit: test_slurm_time_limit.py).

The cluster needs root (Debian packages, daemons). Without it these tests skip; .ci/run sets
PATCHINTERACT_REQUIRE_SLURM=1, which turns that skip into a failure.
"""

import copy
import json
import re
import subprocess
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import yaml
import zarr
from conftest import REPO, SNAKEMAKE, TINY_CONFIG, planned_jobs, run_snakemake
from slurm_jobs import accounting, cluster_config, run_on_slurm

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

GPU_RULES = {"train_baseline", "retrain_vit", "retrain_awd", "retrain_awd_dip", "retrain_winft"}


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster, tmp_path_factory):
    """The tiny DAG through the profile up to the tables (one α, every branch method; the figure
    rules are left to test_workflow to keep CI short), U computed by Dask workers that are Slurm jobs.
    Retraining with SGD: its jobs on one GPU are the reference of the same jobs on two (tests/test_ranks.py)."""
    directory = tmp_path_factory.mktemp("slurm_run")
    config = cluster_config()
    config["alphas"] = [0.1]
    config["retrain"]["recipe"] |= {"optimizer": "sgd", "lr": 0.01}
    config["interaction"] = {"dask": "slurm", "workers": 2, "slurm": {"cores": 1, "memory_mb": 1000, "walltime": 10}}
    result, jobs = run_on_slurm(directory, config, "results/tables/runs.parquet")
    return directory, config, result, jobs


def test_every_job_ran_under_slurm_and_is_in_accounting(slurm_run):
    directory, config, result, jobs = slurm_run
    rules = Counter(rule for _, rule, _ in jobs)
    # Job counts of the tiny DAG; local rules never reach Slurm.
    assert rules["window_masks"] == 2 and rules["interaction_store"] == 2 and rules["train_baseline"] == 1
    assert not {"write_digits", "tables", "all"} & set(rules)
    records = accounting([job_id for job_id, _, _ in jobs])
    assert set(records) == {job_id for job_id, _, _ in jobs}
    for job_id, rule, log in jobs:
        assert records[job_id]["state"] == "COMPLETED", (rule, records[job_id])
        # Slurm's output of each job is kept under results/logs/slurm/rule_<rule>/.
        assert log.is_file() and log.is_relative_to(directory / "results" / "logs" / "slurm")
    assert (directory / "results" / "tables" / "runs.parquet").is_file()


def test_training_jobs_asked_for_a_gpu_and_others_did_not(slurm_run):
    _, _, _, jobs = slurm_run
    records = accounting([job_id for job_id, _, _ in jobs])
    for job_id, rule, _ in jobs:
        assert ("gres/gpu=1" in records[job_id]["tres"]) == (rule in GPU_RULES), (rule, records[job_id]["tres"])
    assert GPU_RULES <= {rule for _, rule, _ in jobs}


def test_dask_workers_ran_as_slurm_jobs_and_match_threads(slurm_run):
    from patchinteract.interaction.interaction_store import compute_interaction_store

    directory, _, _, jobs = slurm_run
    worker_logs = sorted((directory / "results" / "logs" / "dask_workers").glob("*/patchinteract-dask-*.err"))
    assert len(worker_logs) == 4  # 2 worker jobs per split
    worker_ids = [re.search(r"-(\d+)\.err$", p.name).group(1) for p in worker_logs]
    records = accounting(worker_ids)
    assert {r["name"] for r in records.values()} == {"patchinteract-dask"}
    assert any("Starting established connection" in p.read_text() for p in worker_logs)
    # The same U and dip_score as the local threaded scheduler.
    results = directory / "results" / "tiny"
    local = compute_interaction_store(results / "attention/val.zarr", directory / "local_val.zarr", dask_mode="threads")
    on_slurm = zarr.open_group(results / "interaction/val.zarr", mode="r")
    on_threads = zarr.open_group(local, mode="r")
    for name in ("U", "dip_score"):
        np.testing.assert_array_equal(on_slurm[name][:], on_threads[name][:])


def test_rerunning_one_branch_submits_only_its_jobs(slurm_run):
    directory, config, _, _ = slurm_run
    changed = copy.deepcopy(config)
    changed["betas"] = [0.2, 0.3]
    target = "results/tiny/retrain/awd_dip_a0.1_b0.3/seed0/metrics.json"
    _, jobs = run_on_slurm(directory, changed, target)
    # responsive_fields: the val field store whose o gives the branch's E_O (kept patches only)
    assert Counter(rule for _, rule, _ in jobs) == {"token_masks": 2, "responsive_fields": 1, "retrain_awd_dip": 1}
    assert json.loads((directory / target).read_text())["beta"] == 0.3


def test_jobs_with_two_gpus_run_two_ranks(slurm_run):
    """resources.<kind>.gpus: 2 asks Slurm for two GPUs (the node's dummy gres) and runs the job on two ranks
    (gloo: no device behind the gres): a retraining job and the baseline's evaluation give the predictions
    of the same jobs on one GPU (the fixture's run)."""
    directory, config, _, _ = slurm_run
    branch, model = directory / "results/tiny/retrain/awd_a0.1/seed0", directory / "results/tiny/model"
    targets = [str((folder / "metrics.json").relative_to(directory)) for folder in (branch, model)]
    rules = ["retrain_awd", "evaluate_baseline"]

    def outcome(folder):
        return pd.read_parquet(folder / "predictions.parquet"), json.loads((folder / "metrics.json").read_text())

    one_gpu = {folder: outcome(folder) for folder in (branch, model)}
    two = copy.deepcopy(config)
    two["resources"]["train"] |= {"gpus": 2}
    two["resources"]["inference"] |= {"gpus": 2}
    _, jobs = run_on_slurm(directory, two, *targets, "--forcerun", *rules)
    assert sorted(rule for _, rule, _ in jobs) == sorted(rules)
    records = accounting([job_id for job_id, _, _ in jobs])
    assert all("gres/gpu=2" in record["tres"] for record in records.values()), records
    for log in ("retrain/tiny_awd_a0.1_seed0.log", "evaluate_baseline/tiny.log"):
        for rank in (0, 1):
            assert (directory / f"results/logs/{log}.rank{rank}").is_file(), (log, rank)
    for folder, (predictions, metrics) in one_gpu.items():
        ranked_predictions, ranked_metrics = outcome(folder)
        assert ranked_predictions["prediction"].tolist() == predictions["prediction"].tolist()
        assert ranked_metrics["top1"] == metrics["top1"] and ranked_metrics.get("steps") == metrics.get("steps")


def test_a_failing_job_fails_snakemake_naming_its_log(slurm_cluster, tmp_path):
    config = cluster_config()
    run_snakemake(tmp_path, config, "results/datasets/digits/images")  # a local rule
    image = next((tmp_path / "results/datasets/digits/images").rglob("*.png"))
    image.write_bytes(b"not a png")  # data.on_corrupt: error
    target = "results/datasets/digits/manifest.parquet"
    result, jobs = run_on_slurm(tmp_path, config, target, "--retries", "0", check=False)
    assert result.returncode != 0
    assert [rule for _, rule, _ in jobs] == ["dataset_manifest"]
    records = accounting([job_id for job_id, _, _ in jobs])
    assert {r["state"] for r in records.values()} == {"FAILED"}
    message = result.stdout + result.stderr
    for _, _, log in jobs:
        assert str(log) in message and log.is_file()
    assert image.name in (tmp_path / "results/logs/dataset_manifest/digits.log").read_text()
    assert not (tmp_path / "results/datasets/digits/manifest.parquet").exists()


def test_profile_is_found_as_typed_from_the_repository_root(tmp_path):
    """`snakemake --cores 8 --profile slurm` in the repository root picks up profiles/slurm."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(TINY_CONFIG))
    result = subprocess.run(
        [
            *SNAKEMAKE,
            "--cores",
            "8",
            "--profile",
            "slurm",
            "--configfile",
            str(config),
            "--directory",
            str(tmp_path),
            "--dry-run",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"Using profiles? slurm\b", result.stdout + result.stderr)
    assert planned_jobs(result.stdout)["retrain_awd"] == 2 * len(TINY_CONFIG["seeds"])  # two α, every seed
