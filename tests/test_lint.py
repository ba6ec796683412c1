"""Snakemake's linter and the formatters (ruff, snakefmt) are clean."""

import shutil
import subprocess
import sys

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
