"""A training job under a Slurm time limit (the test cluster of tests/slurm/cluster.sh): it stops itself
with a checkpoint before the limit, without a signal, and the profile's retry resumes it.

The job's steps and checkpoint writes are slowed by test-only waits (a 1 s step, a 5 s write, as a large
checkpoint on a shared file system), so its timing is set by those waits and not by this machine's speed
or load: the test runs beside the others. (Under their load a job takes up to ~45 s to start training, so
the first attempt gets 2 minutes.)
"""

import json
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import run_snakemake
from slurm_jobs import accounting, cluster_config, run_on_slurm

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

STEP_SECONDS, CHECKPOINT_SECONDS = 1.0, 5


TARGET = "results/tiny/retrain/vit/seed0/metrics.json"


def prepared_run(directory, ranks: int) -> dict:
    """The config whose retraining job has a 2-minute limit on ``ranks`` ranks, and what that job needs built
    locally in ``directory``."""
    train = {"cpus": 2, "mem_mb": 3000, "runtime": 2, "gpus": 0, "ranks": ranks}
    config = cluster_config(train=train)
    config["datasets"]["digits"] |= {"per_class": 60, "image_size": 32}  # 360 train images
    config["experiments"]["tiny"] |= {"img_size": 32, "retrain_methods": ["vit"]}
    config["retrain"]["recipe"]["epochs"] = 2
    directory.mkdir()
    run_snakemake(directory, config, TARGET, "--omit-from", "retrain_vit")
    return config


def run_through_the_profile(directory, config: dict):
    return run_on_slurm(directory, config, TARGET, "--retries", "1")


def test_a_job_stops_before_its_time_limit_and_the_profiles_retry_resumes(slurm_cluster, tmp_path, monkeypatch):
    """Two epochs of 45 steps: at least 90 s of waits, more than a 2-minute job can train once its start,
    the margin and three 5 s writes are paid, and fewer than its retry's 4 minutes hold. The first attempt
    stops while the next step and a write still fit, and fails; the retry (twice the runtime) resumes from
    its checkpoint and finishes. The same on 1 rank and on 2 (gloo), both at once: on 2 every rank stops at
    the same step (each rank's log says why)."""
    from patchinteract.training.deadline import MARGIN_SECONDS

    folders = {ranks: tmp_path / f"ranks{ranks}" for ranks in (1, 2)}
    with ThreadPoolExecutor(2) as pool:
        configs = dict(zip(folders, pool.map(prepared_run, folders.values(), folders), strict=True))
        monkeypatch.setenv("PATCHINTERACT_TEST_STEP_DELAY", str(STEP_SECONDS))
        monkeypatch.setenv("PATCHINTERACT_TEST_CHECKPOINT_DELAY", str(CHECKPOINT_SECONDS))
        runs = {ranks: pool.submit(run_through_the_profile, folders[ranks], configs[ranks]) for ranks in folders}
    for ranks, run in runs.items():
        directory, config = folders[ranks], configs[ranks]
        result, jobs = run.result()
        attempts = [job for job in jobs if job[1] == "retrain_vit"]
        assert [rule for _, rule, _ in jobs] == ["retrain_vit", "retrain_vit"], (ranks, result.stderr[-3000:])
        records = accounting([job_id for job_id, _, _ in attempts])
        (first, _, first_log), (second, _, _) = attempts
        assert (records[first]["state"], records[first]["timelimit"]) == ("FAILED", "00:02:00"), records
        assert (records[second]["state"], records[second]["timelimit"]) == ("COMPLETED", "00:04:00"), records

        # The first attempt's Slurm log; on 2 ranks rank 0's log, which the retry appends to
        logs = directory / "results/logs/retrain"
        said = "".join(log.read_text() for log in (first_log, logs / "tiny_vit_seed0.log.rank0") if log.is_file())
        stop = re.search(
            r"time limit near: stopped at step (\d+), checkpoint written (-?\d+) s before the job's end", said
        )
        assert stop, (ranks, said[-3000:])
        stopped_at, seconds_left = int(stop.group(1)), int(stop.group(2))
        assert seconds_left >= MARGIN_SECONDS - 1, ranks  # the write measured and foreseen: the margin is left
        if ranks == 2:
            rank1 = (logs / "tiny_vit_seed0.log.rank1").read_text()
            assert f"stopped at step {stopped_at} with another rank" in rank1, rank1[-2000:]
        # The retry's training log (on 2 ranks, rank 0's)
        training_log = (logs / f"tiny_vit_seed0.log{'.rank0' if ranks == 2 else ''}").read_text()
        resumed = re.findall(r"resuming from .*", training_log)
        assert resumed and f"at step {stopped_at} " in resumed[-1], training_log[-2000:]
        metrics = json.loads((directory / TARGET).read_text())
        recipe = config["retrain"]["recipe"]
        assert 0 < stopped_at < metrics["steps"] == recipe["epochs"] * 360 // recipe["batch_size"]
        assert metrics["resumed_from_step"] == stopped_at
        assert not (directory / "results/tiny/retrain/vit/seed0/checkpoint.pt").exists()
