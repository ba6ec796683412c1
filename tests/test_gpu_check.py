"""`make gpu-check` on CPU: the same code as on a GPU, at a tiny model size in float32."""

import json
import math
import subprocess
import sys

from conftest import REPO

BRANCHES = {"vit", "awd", "awd_dip multiply", "awd_dip drop_keys", "winft multiply", "winft neg_inf"}


def gpu_check(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "benchmarks/gpu_check.py", "--device", "cpu", *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_gpu_check_runs_every_branch_on_cpu(tmp_path):
    result = gpu_check("--out", str(tmp_path / "check.json"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "gpu-check passed" in result.stdout
    report = json.loads((tmp_path / "check.json").read_text())
    assert report["precision"] == "float32" and set(report["branches"]) == BRANCHES
    assert set(report["stages"]) == {"plain inference", "attention capture", "streaming U"}
    assert report["stages"]["plain inference"]["vs_plain_inference"] == 1.0
    assert all(stage["images_per_s"] > 0 for stage in report["stages"].values())
    for name, figures in report["branches"].items():
        assert figures["images_per_s"] > 0 and math.isfinite(figures["loss_last"]), name
        assert figures["step_vs_vit"] > 0 and 0 <= figures["eval_top1"] <= 100, name
    assert report["branches"]["vit"]["step_vs_vit"] == 1.0
    assert 16 <= report["branches"]["winft neg_inf"]["eval_eo"] <= 256  # W over 4x4 patches, diagonal forced


def test_gpu_check_fails_loudly_on_a_non_finite_loss():
    result = gpu_check("--lr", "1e30")  # the first step blows the weights up
    assert result.returncode != 0
    assert "FloatingPointError: branch vit: training loss is" in result.stderr


def test_gpu_check_measures_the_training_step_on_several_ranks(tmp_path):
    """What it runs on a node with several GPUs (NCCL), here on two gloo ranks: images/s on 1 and 2 ranks."""
    result = gpu_check("--ranks", "2", "--steps", "1", "--out", str(tmp_path / "check.json"))
    assert result.returncode == 0, result.stdout + result.stderr
    scaling = json.loads((tmp_path / "check.json").read_text())["ranks"]
    assert scaling["1"]["images_per_s"] > 0 and scaling["2"]["images_per_s"] > 0
    assert scaling["speed_up"] == scaling["2"]["images_per_s"] / scaling["1"]["images_per_s"]
    assert "on 2 ranks" in result.stdout
