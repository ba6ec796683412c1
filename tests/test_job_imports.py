"""What a job loads before its work starts: jobs without a model import no torch, model jobs no Dask or
SciPy (benchmarks/bench_job_start.py times the same imports against ``import torch``)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from bench_job_start import (  # noqa: E402
    HEAVY_FOR_MODEL_JOBS,
    NOTEBOOKS,
    SCRIPTS,
    job_kind,
    loaded_modules,
    notebook_imports,
    script_imports,
)

SCRIPTS_BY_KIND = {}
for path in sorted(SCRIPTS.glob("*.py")):
    SCRIPTS_BY_KIND.setdefault(job_kind(path.stem), []).append(path)


def test_jobs_without_a_model_and_the_figure_notebooks_import_no_torch():
    """All of their imports in one interpreter: neither torch nor timm (nor torchvision) is loaded."""
    code = "\n".join(
        [script_imports(path) for path in SCRIPTS_BY_KIND["no torch"]]
        + [notebook_imports(path) for path in sorted(NOTEBOOKS.glob("*.ipynb"))]
    )
    assert loaded_modules(code, ("torch", "timm", "torchvision")) == set()


def test_model_jobs_import_no_dask_or_scipy():
    """Dask is imported where a job builds its graphs, SciPy where a table tests: no model job loads them
    at its start (the streaming stores, training and inference need neither)."""
    code = "\n".join(script_imports(path) for path in SCRIPTS_BY_KIND["model"])
    assert loaded_modules(code, (*HEAVY_FOR_MODEL_JOBS, "timm")) == {"timm"}
