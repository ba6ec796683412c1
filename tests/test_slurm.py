"""The Slurm profile on a real one-node cluster (tests/slurm/cluster.sh): jobs, GPUs, failures,
one-branch reruns, Dask workers as Slurm jobs, and a time-out that checkpoints and resumes.

The cluster needs root (Debian packages, daemons). Without it these tests skip; .ci/run sets
PATCHINTERACT_REQUIRE_SLURM=1, which turns that skip into a failure.
"""

import copy
import json
import math
import os
import re
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
import zarr
from conftest import REPO, SNAKEMAKE, TINY_CONFIG, planned_jobs, run_snakemake

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

CLUSTER_SCRIPT = REPO / "tests" / "slurm" / "cluster.sh"
PROFILE = REPO / "profiles" / "slurm"
# The profile as a user runs it, with faster polling: the tiny jobs take seconds, not hours. (The
# plugin polls after 6 s, then waits 10 s longer after each poll that finds no job finished.)
SLURM_ARGS = (
    "--profile",
    str(PROFILE),
    "--cores",
    "8",
    "--slurm-init-seconds-before-status-checks",
    "6",
    "--seconds-between-status-checks",
    "2",
)
SUBMITTED = re.compile(r"submitted with SLURM jobid (\d+) \(log: (\S+)\)")
GPU_RULES = {"train_baseline", "retrain_vit", "retrain_awd", "retrain_awd_dip", "retrain_winft"}


def unavailable(reason: str):
    if os.environ.get("PATCHINTERACT_REQUIRE_SLURM") == "1":
        pytest.fail(f"Slurm test cluster required (PATCHINTERACT_REQUIRE_SLURM=1) but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def slurm_cluster():
    """A running one-node cluster with slurmdbd accounting; stopped by PID afterwards."""
    if os.geteuid() != 0:
        unavailable("the Slurm test cluster needs root (it installs Debian packages and runs daemons)")
    for step in ("install", "start"):
        result = subprocess.run(["bash", str(CLUSTER_SCRIPT), step], capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            subprocess.run(["bash", str(CLUSTER_SCRIPT), "stop"], capture_output=True)
            unavailable(f"'cluster.sh {step}' failed:\n{result.stdout}\n{result.stderr}")
    yield
    subprocess.run(["bash", str(CLUSTER_SCRIPT), "stop"], check=True, timeout=120)
    # A slurm.conf left without its controller would make every later `snakemake` start wait 9 s.
    conf = Path("/etc/slurm/slurm.conf")
    assert not (conf.exists() and "written by patchinteract" in conf.read_text()), f"cluster.sh stop left {conf}"


def cluster_config(**resources) -> dict:
    """The tiny config (one retraining seed) with per-kind resources that fit the test node; training asks
    for a GPU."""
    config = copy.deepcopy(TINY_CONFIG) | {"seeds": [0]}
    config["resources"] = {
        "default": {"cpus": 1, "mem_mb": 1000, "runtime": 10},
        "inference": {"cpus": 1, "mem_mb": 1000, "runtime": 10},
        "interaction": {"cpus": 1, "mem_mb": 1000, "runtime": 10},
        "train": {"cpus": 1, "mem_mb": 1000, "runtime": 10, "gpus": 1},
    } | resources
    return config


def submitted_jobs(output: str) -> list[tuple[str, str, Path]]:
    """(Slurm job id, rule, Slurm log) of every job the run submitted."""
    jobs = []
    for job_id, log in SUBMITTED.findall(output):
        rule = next(part[len("rule_") :] for part in Path(log).parts if part.startswith("rule_"))
        jobs.append((job_id, rule, Path(log)))
    return jobs


def accounting(job_ids) -> dict[str, dict]:
    """sacct's record (State, AllocTRES, Timelimit) of each job, from slurmdbd."""
    out = subprocess.run(
        ["sacct", "-X", "-P", "-n", "-j", ",".join(job_ids), "-o", "JobID,JobName,State,AllocTRES,Timelimit"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    records = {}
    for line in out.splitlines():
        job_id, name, state, tres, limit = line.split("|")
        records[job_id] = {"name": name, "state": state, "tres": tres, "timelimit": limit}
    return records


def run_on_slurm(directory: Path, config: dict, *args: str, check: bool = True):
    result = run_snakemake(directory, config, *SLURM_ARGS, *args, check=check)
    return result, submitted_jobs(result.stdout + result.stderr)


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster, tmp_path_factory):
    """The tiny DAG through the profile up to the tables (one α, every branch method; the figure
    rules are left to test_workflow to keep CI short), U computed by Dask workers that are Slurm jobs."""
    directory = tmp_path_factory.mktemp("slurm_run")
    config = cluster_config()
    config["alphas"] = [0.1]
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
    from patchinteract.interaction.store import compute_interaction_store

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
    of the same jobs run locally on one rank."""
    directory, config, _, _ = slurm_run
    branch, model = directory / "results/tiny/retrain/awd_a0.1/seed0", directory / "results/tiny/model"
    one = copy.deepcopy(config)
    one["retrain"]["recipe"] |= {"optimizer": "sgd", "lr": 0.01}  # SGD: see tests/test_ranks.py
    targets = [str((folder / "metrics.json").relative_to(directory)) for folder in (branch, model)]
    rules = ["retrain_awd", "evaluate_baseline"]
    run_snakemake(directory, one, *targets, "--forcerun", *rules)  # locally, one rank

    def outcome(folder):
        return pd.read_parquet(folder / "predictions.parquet"), json.loads((folder / "metrics.json").read_text())

    local = {folder: outcome(folder) for folder in (branch, model)}
    two = copy.deepcopy(one)
    two["resources"]["train"] |= {"gpus": 2}
    two["resources"]["inference"] |= {"gpus": 2}
    _, jobs = run_on_slurm(directory, two, *targets, "--forcerun", *rules)
    assert sorted(rule for _, rule, _ in jobs) == sorted(rules)
    records = accounting([job_id for job_id, _, _ in jobs])
    assert all("gres/gpu=2" in record["tres"] for record in records.values()), records
    for log in ("retrain/tiny_awd_a0.1_seed0.log", "evaluate_baseline/tiny.log"):
        for rank in (0, 1):
            assert (directory / f"results/logs/{log}.rank{rank}").is_file(), (log, rank)
    for folder, (predictions, metrics) in local.items():
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


def training_steps_per_second(config: dict, batch_size: int, threads: int) -> float:
    """This machine's steps per second on the experiment's model with the training jobs' optimizer (its
    speed varies by ~1.5x from run to run, so the time-out test sizes its work in seconds, not steps)."""
    import time

    import torch

    from patchinteract.grid import model_settings
    from patchinteract.models.vit import build_model
    from patchinteract.training.loop import Recipe, make_optimizer

    model = build_model(model_settings(config, "tiny"), num_classes=10)
    optimizer = make_optimizer(model, Recipe.from_config(config["retrain"]["recipe"]))
    size = config["experiments"]["tiny"]["img_size"]
    images, labels = torch.randn(batch_size, 3, size, size), torch.zeros(batch_size, dtype=torch.long)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for step in range(60):
            if step == 10:
                start = time.perf_counter()
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(images), labels).backward()
            optimizer.step()
    finally:
        torch.set_num_threads(previous)
    return 50 / (time.perf_counter() - start)


@pytest.mark.exclusive  # sizes its work by this machine's measured speed: run alone (make test)
def test_a_job_stops_before_its_time_limit_and_the_profiles_retry_resumes(slurm_cluster, tmp_path, monkeypatch):
    """Training sized to ~1 min of this machine's time; its job gets 1 min, a checkpoint write is slowed to
    5 s (as a large one on a shared file system). No signal is needed: the job stops itself, with a
    checkpoint, while the next step and the write still fit before Slurm's limit, and fails; the profile's
    retry (twice the runtime) resumes from the checkpoint and finishes."""
    from patchinteract.training.deadline import MARGIN_SECONDS

    config = cluster_config(train={"cpus": 2, "mem_mb": 2000, "runtime": 1, "gpus": 1})
    config["datasets"]["digits"] |= {"per_class": 170, "image_size": 32}
    train_images = 1700 - math.ceil(1700 * config["datasets"]["digits"]["val_fraction"])  # 1,020
    config["experiments"]["tiny"] |= {
        "img_size": 32,
        "retrain_methods": ["vit"],
        "model_args": {"embed_dim": 64, "depth": 4, "num_heads": 4, "mlp_ratio": 2.0},
    }
    recipe = config["retrain"]["recipe"]
    steps_per_epoch = train_images // recipe["batch_size"]  # the last, partial batch is dropped
    # A job trains at 0.6-0.9x the bare model's speed (data loading): 40 s of the bare loop and a 5 s write
    # after each of its few epochs is 75-100 s of a job's work, more than the first attempt does before it
    # stops (60 s less imports, the margin and two writes), and less than the retry's 2 minutes hold.
    speed = training_steps_per_second(config, recipe["batch_size"], threads=2)
    recipe["epochs"] = math.ceil(40 * speed / steps_per_epoch)
    target = "results/tiny/retrain/vit/seed0/metrics.json"
    monkeypatch.setenv("PATCHINTERACT_TEST_CHECKPOINT_DELAY", "5")

    # Polling from 2 s on: each job's end is noticed sooner (the plugin's backoff adds 10 s a poll).
    result, jobs = run_on_slurm(
        tmp_path, config, target, "--retries", "1", "--slurm-init-seconds-before-status-checks", "2"
    )
    attempts = [job for job in jobs if job[1] == "retrain_vit"]
    assert len(attempts) == 2, f"{speed:.0f} steps/s: {attempts}"
    records = accounting([job_id for job_id, _, _ in attempts])
    (first, _, first_log), (second, _, _) = attempts
    assert (records[first]["state"], records[first]["timelimit"]) == ("FAILED", "00:01:00"), records
    assert (records[second]["state"], records[second]["timelimit"]) == ("COMPLETED", "00:02:00"), records
    stop = re.search(r"time limit near: stopped at step (\d+), (\d+) s before the job's end", first_log.read_text())
    assert stop, first_log.read_text()[-3000:]
    stopped_at, seconds_left = int(stop.group(1)), int(stop.group(2))
    assert seconds_left >= MARGIN_SECONDS + 5 - 1  # the margin and the measured 5 s write were left
    training_log = (tmp_path / "results/logs/retrain/tiny_vit_seed0.log").read_text()
    assert f"at step {stopped_at} " in re.search(r"resuming from .*", training_log).group(0)
    metrics = json.loads((tmp_path / target).read_text())
    assert 0 < stopped_at < metrics["steps"] == recipe["epochs"] * steps_per_epoch
    assert metrics["resumed_from_step"] == stopped_at
    assert not (tmp_path / "results/tiny/retrain/vit/seed0/checkpoint.pt").exists()


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
