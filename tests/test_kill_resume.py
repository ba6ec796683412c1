"""The whole DAG killed with SIGKILL at seeded moments and resumed as the README says: the same tables as an
uninterrupted run, no partial store left, and no job run again whose outputs were complete."""

import base64
import os
import random
import signal
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from conftest import SNAKEMAKE, TINY_CONFIG, repository_copy, run_from_root, write_config

pytestmark = pytest.mark.slow

# One retraining seed and one α: the DAG keeps every stage (48 → 36 jobs, ~1 min on 2 cores).
CONFIG = TINY_CONFIG | {"seeds": [0], "alphas": [0.5]}
KILLS = 3
SEED = 2026


def recorded_paths(root: Path, folder: str) -> set[str]:
    """Output paths that Snakemake keeps a file for in .snakemake/<folder> (metadata: the outputs of
    finished jobs; incomplete: those of jobs that started and did not finish). The file's name is the
    path in URL-safe base64, split into folders named '@…' where it is long."""
    paths = set()
    for record in (root / ".snakemake" / folder).rglob("*"):
        if record.is_file():
            parts = record.relative_to(root / ".snakemake" / folder).parts
            encoded = "".join(part.removeprefix("@") for part in parts)
            paths.add(base64.urlsafe_b64decode(encoded).decode())
    return paths


def complete_outputs(root: Path) -> dict[str, int]:
    """Every output a finished job left, with its modification time (ns)."""
    outputs = recorded_paths(root, "metadata") - recorded_paths(root, "incomplete")
    return {path: (root / path).stat().st_mtime_ns for path in outputs if (root / path).exists()}


def killed_after(root: Path, seconds: float, *args: str) -> bool:
    """Start snakemake in ``root`` and SIGKILL its whole process group after ``seconds`` (as a node failure or
    `kill -9` does); False when the run finished first."""
    command = [*SNAKEMAKE, "--configfile", "config.yaml", "--cores", "2", *args]
    process = subprocess.Popen(command, cwd=root, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        process.wait(timeout=seconds)
        assert process.returncode == 0, f"snakemake failed ({process.returncode}) before it was killed"
        return False
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return True


def table_frames(root: Path) -> dict[str, pd.DataFrame]:
    """Every Parquet table of results/tables/, timings aside."""
    frames = {}
    for path in sorted((root / "results/tables").glob("*.parquet")):
        frame = pd.read_parquet(path)
        frames[path.name] = frame.drop(columns=[c for c in frame.columns if "seconds" in c])
    return frames


def test_killed_at_any_moment_and_resumed_gives_the_same_tables(tmp_path):
    reference = repository_copy(tmp_path / "uninterrupted")
    run_from_root(reference, CONFIG)

    root = repository_copy(tmp_path / "killed")
    write_config(root, CONFIG)
    moments = random.Random(SEED)
    kept: dict[str, int] = {}  # outputs complete at some kill: none may be written again
    kills = 0
    for attempt in range(KILLS):
        # The README's commands after a killed run: unlock the folder, then rerun what was incomplete.
        resume = ["--rerun-incomplete"] if attempt else []
        if attempt:
            subprocess.run([*SNAKEMAKE, "--configfile", "config.yaml", "--unlock"], cwd=root, check=True,
                           capture_output=True)  # fmt: skip
        if killed_after(root, moments.uniform(8, 30), *resume):
            kills += 1
            complete = complete_outputs(root)
            assert all(complete.get(path) == mtime for path, mtime in kept.items()), "a complete output changed"
            kept |= complete
    assert kills == KILLS and kept, "every kill must land inside the run"

    subprocess.run([*SNAKEMAKE, "--configfile", "config.yaml", "--unlock"], cwd=root, check=True, capture_output=True)
    run_from_root(root, CONFIG, "--rerun-incomplete")

    rewritten = [path for path, mtime in kept.items() if (root / path).stat().st_mtime_ns != mtime]
    assert not rewritten, f"outputs of finished jobs were computed again: {rewritten}"
    assert not list((root / "results").rglob("*.partial")), "a partial store was left behind"
    assert not list((root / "results").rglob("checkpoint.pt")), "a training checkpoint was left behind"
    assert not recorded_paths(root, "incomplete")
    expected, resumed = table_frames(reference), table_frames(root)
    assert resumed.keys() == expected.keys() and len(expected) >= 10
    for name, frame in expected.items():
        pd.testing.assert_frame_equal(resumed[name], frame, obj=name)
    result = run_from_root(root, CONFIG, "--dry-run")
    assert "Nothing to be done" in result.stdout + result.stderr
