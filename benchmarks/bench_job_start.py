"""A job's start: the time to import what each rule's script imports, against ``import torch`` alone,
each in a fresh interpreter (the best of ``--runs``, the baseline timed in the same command); then the
model jobs' start on a warm server (patchinteract/warm_start.py: what a local run does), from the job's
``python <script>`` until its imports are done in the fork. Each script's imports follow those of
Snakemake's preamble.

The goal (docs/scaling.md): a model job starts within 1.6x of ``import torch``; jobs that need no
model import neither timm nor torch. ``JOB_KINDS`` says which script is which kind; tests/test_job_imports.py
checks the modules each kind may load (no timing there)."""

import argparse
import ast
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import goal_line

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "workflow_scripts"
NOTEBOOKS = REPO / "notebooks"

# Scripts that run a timm model (every other script is listed under the kind it is).
TORCH_WITHOUT_MODEL = {"compute_interaction", "pattern_autoencoder"}  # U on torch; the pattern autoencoder
NO_TORCH = {
    "attention_patterns", "compute_masks", "download_dataset", "explorer", "head_sample", "head_summary",
    "image_overview", "make_manifest", "make_tables", "mean_colour", "pretraining_table", "run_notebook",
    "semantics_summary", "theta_masking_table", "write_digits",
}  # fmt: skip
GOAL = 1.6  # a model job's imports / import torch
# What Snakemake's preamble imports in every job's process before the script's own lines (to unpickle the job)
PREAMBLE = "import snakemake.script\nfrom snakemake.logging import logger\n"
HEAVY_FOR_MODEL_JOBS = ("dask.array", "scipy")  # what no model job needs at its start


def job_kind(name: str) -> str:
    if name in NO_TORCH:
        return "no torch"
    return "torch, no model" if name in TORCH_WITHOUT_MODEL else "model"


def top_level_imports(source: str) -> list[str]:
    """The module-level import statements of ``source``, as code."""
    return [ast.unparse(node) for node in ast.parse(source).body if isinstance(node, ast.Import | ast.ImportFrom)]


def script_imports(path: Path) -> str:
    """What a rule's script imports before its job runs."""
    return "\n".join(top_level_imports(path.read_text()))


def notebook_imports(path: Path) -> str:
    """What a figure notebook's code cells import (at their top level)."""
    cells = json.loads(path.read_text())["cells"]
    sources = ["".join(cell["source"]) for cell in cells if cell["cell_type"] == "code"]
    return "\n".join(line for source in sources for line in top_level_imports(source))


def loaded_modules(code: str, modules: tuple[str, ...]) -> set[str]:
    """Which of ``modules`` a fresh interpreter has loaded after running ``code``."""
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {modules!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True)
    return set(result.stdout.split())


def best_seconds(code: str, runs: int, environment: dict | None = None) -> float:
    """The best time of ``python <a script of code>``, as Snakemake runs a job's script."""
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "job.py"
        script.write_text(code)
        best = float("inf")
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run([sys.executable, str(script)], check=True, cwd=REPO, env=environment)
            best = min(best, time.perf_counter() - start)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="fresh interpreters per script (the best counts)")
    args = parser.parse_args()
    torch_seconds = best_seconds("import torch", args.runs)
    print(f"import torch: {torch_seconds:.2f} s (best of {args.runs})")
    worst = {}
    for path in sorted(SCRIPTS.glob("*.py")):
        kind = job_kind(path.stem)
        seconds = best_seconds(PREAMBLE + script_imports(path), args.runs)
        worst[kind] = max(worst.get(kind, 0.0), seconds / torch_seconds)
        print(f"  {path.stem:<22} {kind:<16} {seconds:5.2f} s  {seconds / torch_seconds:4.2f}x")
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):  # a figure job's kernel imports these
        seconds = best_seconds(notebook_imports(path), args.runs)
        worst["no torch"] = max(worst["no torch"], seconds / torch_seconds)
        print(f"  {path.name:<22} {'no torch':<16} {seconds:5.2f} s  {seconds / torch_seconds:4.2f}x")
    print(f"cold: a model job's imports at most {worst['model']:.2f}x import torch (the slowest script)")
    print(f"jobs without a model: at most {worst['no torch']:.2f}x import torch (goal: no torch imported)")

    from patchinteract.warm_start import start_server

    environment = dict(os.environ, PYTHONPATH=str(REPO))
    with tempfile.TemporaryDirectory() as folder:
        start_server("auto", "cpu", str(Path(folder) / "warm_start.log"), environment)
        best_seconds("import patchinteract", 1, environment)  # the server's own imports, before timing
        warm = []
        for path in sorted(SCRIPTS.glob("*.py")):
            if job_kind(path.stem) == "model":
                code = f"{PREAMBLE}import patchinteract\n{script_imports(path)}"
                seconds = best_seconds(code, args.runs, environment)
                warm.append(seconds / torch_seconds)
                print(f"  warm {path.stem:<17} {seconds:5.2f} s  {seconds / torch_seconds:4.2f}x")
    print(goal_line("a model job's start on a warm server / import torch (the slowest script)", [max(warm)], GOAL))


if __name__ == "__main__":
    main()
