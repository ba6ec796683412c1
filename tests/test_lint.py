"""Snakemake's linter and the formatters (ruff, snakefmt) are clean."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO, SNAKEMAKE


def test_snakemake_lint_is_clean(tmp_path):
    shutil.copytree(REPO, tmp_path / "repo", ignore=shutil.ignore_patterns(".venv", "results", ".snakemake", ".git"))
    result = subprocess.run([*SNAKEMAKE, "--lint"], cwd=tmp_path / "repo", capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr, result.stdout


def test_code_is_formatted():
    ruff = [sys.executable, "-m", "ruff"]
    for command in ([*ruff, "check", "."], [*ruff, "format", "--check", "."]):
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
    snakefiles = ["Snakefile", *map(str, sorted(REPO.glob("rules/*.smk")))]
    result = subprocess.run(
        [sys.executable, "-m", "snakefmt", "--check", *snakefiles], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def lint_imports(root):
    command = [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"]
    return subprocess.run(command, cwd=root, capture_output=True, text=True, env=os.environ | {"PYTHONPATH": str(root)})


def test_imports_follow_the_layers(tmp_path):
    """The import-linter contract in pyproject.toml holds, and it is live: an import from models up into
    training (what models/winft.py once did) breaks it."""
    result = lint_imports(REPO)
    assert result.returncode == 0 and "1 kept, 0 broken" in result.stdout, result.stdout + result.stderr
    copy = tmp_path / "repo"
    shutil.copytree(REPO, copy, ignore=shutil.ignore_patterns(".venv", "results", ".snakemake", ".git", "tests"))
    winft = copy / "patchinteract/models/winft.py"
    winft.write_text(winft.read_text() + "\nfrom patchinteract.training.evaluation import Predictions  # noqa\n")
    result = lint_imports(copy)
    assert result.returncode != 0, result.stdout
    assert "patchinteract.models is not allowed to import patchinteract.training" in result.stdout, result.stdout
