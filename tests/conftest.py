"""Shared fixtures: the repository, a tiny config, and a runner for the real Snakemake DAG."""

import contextlib
import copy
import fcntl
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import patchinteract.compat  # noqa: F401  (before anything imports timm or torchvision)

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]

# A few dozen digits and a 2-block ViT: the whole DAG runs in seconds. Two retraining seeds: every
# branch runs twice and the tables aggregate them (the Slurm tests run one).
TINY_CONFIG = {
    "seed": 0,
    "seeds": [0, 1],
    "device": "cpu",
    "data": {"on_corrupt": "error", "check_threads": 2, "loader_workers": 0},
    "datasets": {"digits": {"source": "digits", "image_size": 16, "val_fraction": 0.4, "per_class": 5}},
    "experiments": {
        "tiny": {
            "dataset": "digits",
            "model": "VisionTransformer",
            "model_args": {"embed_dim": 32, "depth": 2, "num_heads": 2, "mlp_ratio": 2.0},
            "img_size": 16,
            "patch_size": 4,
            "pretrained": "none",
            "train_baseline": {"optimizer": "adamw", "lr": 0.001, "batch_size": 8, "epochs": 2, "hflip": False},
        }
    },
    "attention": {"splits": ["train", "val"], "batch_size": 8, "images_per_chunk": 4},
    "interaction": {"dask": "threads", "workers": 2},
    "alphas": [0.5, 0.1],
    "betas": [0.2],
    "dip_alphas": [0.1],
    "winft": {"alpha": 0.1, "beta": 0.2, "figure_images": 2},
    "retrain": {
        "methods": ["vit", "awd", "awd_dip", "winft"],
        "recipe": {"optimizer": "adamw", "lr": 0.001, "batch_size": 8, "epochs": 1, "hflip": False},
    },
    "pretraining": {
        "enabled": True,
        "betas": [0.1, 0.5],
        "rounds_per_step": 1,
        "decoder": {"width": 16, "depth": 1, "heads": 2},
        "knn": {"k": 5},
        "recipe": {"optimizer": "adamw", "lr": 0.001, "batch_size": 8, "epochs": 3, "hflip": True},
        "restoration": {"figure_images": 2},
    },
}


@pytest.fixture(scope="session")
def digits_manifest(tmp_path_factory):
    """A manifest of 60 digits (36 train, 24 val) at 16 px, built with the library."""
    from patchinteract.data.manifest import check_images, finalize_manifest, write_manifest
    from patchinteract.data.sources import write_digits_imagefolder

    root = tmp_path_factory.mktemp("digits")
    table = write_digits_imagefolder(root / "images", image_size=16, val_fraction=0.4, seed=0, per_class=6)
    manifest = finalize_manifest(check_images(table, root / "images", "error"))
    write_manifest(manifest, root / "manifest.parquet", root / "images")
    return root / "manifest.parquet"


@pytest.fixture
def browser():
    """Headless Chromium (Selenium) for the explorer's pages; the test is skipped where Chromium is missing,
    and fails instead with PATCHINTERACT_REQUIRE_BROWSER=1 (CI)."""
    from browser import BrowserMissing, chromium

    session = chromium()
    try:
        driver = session.__enter__()
    except BrowserMissing as missing:
        if os.environ.get("PATCHINTERACT_REQUIRE_BROWSER") == "1":
            pytest.fail(f"Chromium required (PATCHINTERACT_REQUIRE_BROWSER=1): {missing}")
        pytest.skip(str(missing))
    try:
        yield driver
    finally:
        session.__exit__(None, None, None)


def bokeh_data(driver, name: str) -> dict:
    """The data of the page's Bokeh model ``name`` (a ColumnDataSource)."""
    return driver.execute_script(f"return Bokeh.documents[0].get_model_by_name('{name}').data")


# The files that take longest, first: `make test` hands whole files to its workers in collection order
# (pytest-xdist --dist loadfile --no-loadscope-reorder), so none of these starts last and alone.
LONGEST_FILES = (
    "test_workflow.py", "test_model_families.py", "test_slurm.py", "test_slurm_time_limit.py", "test_ranks.py",
)  # fmt: skip


def pytest_collection_modifyitems(items):
    first = {name: position for position, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: first.get(item.path.name, len(first)))


SLURM_CLUSTER_SCRIPT = REPO / "tests" / "slurm" / "cluster.sh"
# The test processes (pids) that use the cluster now: the first starts it, the last stops it, so Slurm
# tests in several files run on parallel workers against one cluster.
SLURM_CLUSTER_USERS = Path(os.environ.get("PATCHINTERACT_SLURM_DIR", "/tmp/patchinteract-slurm") + ".users")


def slurm_unavailable(reason: str):
    if os.environ.get("PATCHINTERACT_REQUIRE_SLURM") == "1":
        pytest.fail(f"Slurm test cluster required (PATCHINTERACT_REQUIRE_SLURM=1) but {reason}")
    pytest.skip(reason)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@contextlib.contextmanager
def slurm_cluster_users():
    """The set of live processes using the test cluster, under an exclusive lock; saved as left."""
    with open(SLURM_CLUSTER_USERS, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        users = {pid for pid in map(int, handle.read().split()) if process_alive(pid)}
        yield users
        handle.seek(0)
        handle.truncate()
        handle.write(" ".join(map(str, sorted(users))))


@pytest.fixture(scope="module")
def slurm_cluster():
    """A running one-node cluster with slurmdbd accounting (tests/slurm/cluster.sh), shared by the test
    processes that use it at the same time; stopped by PID after the last."""
    if os.geteuid() != 0:
        slurm_unavailable("the Slurm test cluster needs root (it installs Debian packages and runs daemons)")
    script = ["bash", str(SLURM_CLUSTER_SCRIPT)]
    with slurm_cluster_users() as users:
        for step in () if users else ("install", "start"):
            result = subprocess.run([*script, step], capture_output=True, text=True, timeout=600)
            if result.returncode != 0:
                subprocess.run([*script, "stop"], capture_output=True)
                slurm_unavailable(f"'cluster.sh {step}' failed:\n{result.stdout}\n{result.stderr}")
        users.add(os.getpid())
    yield
    with slurm_cluster_users() as users:
        users.discard(os.getpid())
        if users:
            return
        subprocess.run([*script, "stop"], check=True, timeout=120)
    # A slurm.conf left without its controller would make every later `snakemake` start wait 9 s.
    conf = Path("/etc/slurm/slurm.conf")
    assert not (conf.exists() and "written by patchinteract" in conf.read_text()), f"cluster.sh stop left {conf}"


@pytest.fixture
def tiny_config():
    return copy.deepcopy(TINY_CONFIG)


def write_config(directory: Path, config: dict) -> Path:
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_snakemake(directory: Path, config: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the repository's Snakefile in ``directory`` with ``config`` (results go there)."""
    command = [
        *SNAKEMAKE,
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(directory),
        "--configfile",
        str(write_config(directory, config)),
        "--cores",
        "2",
        *args,
    ]
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    # cwd too: the Slurm profile's log folder is relative to where snakemake starts.
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900, cwd=directory)
    if check and result.returncode != 0:
        raise AssertionError(
            f"snakemake failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}"
        )
    return result


def repository_copy(destination: Path) -> Path:
    """The repository's tracked files and its .git under ``destination``: a checkout to run from its root, as
    users do, with the same code revision in its records."""
    shutil.copytree(REPO / ".git", destination / ".git")
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if (REPO / name).is_file() or (REPO / name).is_symlink():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, destination / name, follow_symlinks=False)  # ./slurm is a link
    return destination


def run_from_root(root: Path, config: dict, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """``snakemake --configfile <config> --cores 2 ...`` typed at the root of a checkout (the README's command);
    ``timeout``: seconds before a run counts as hung."""
    command = [*SNAKEMAKE, "--configfile", str(write_config(root, config)), "--cores", "2", *args]
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout, cwd=root)
    if result.returncode != 0:
        raise AssertionError(
            f"snakemake failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}"
        )
    return result


def snakemake_from_root(*args: str) -> subprocess.CompletedProcess:
    """A dry run of every job as a user types it, from the repository root (``--forceall``: the
    plan does not depend on what the repository's own results/ already holds)."""
    command = [*SNAKEMAKE, "--dry-run", "--forceall", "--cores", "8", *args]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)
    if result.returncode != 0:
        output = result.stdout[-4000:] + "\n" + result.stderr[-4000:]
        raise AssertionError(f"snakemake failed ({result.returncode}):\n{output}")
    return result


def planned_wildcards(dry_run_stdout: str, name: str) -> set[str]:
    """Every value of wildcard ``name`` among the jobs of a dry run."""
    return set(re.findall(rf"\bwildcards: .*?\b{name}=([^,\s]+)", dry_run_stdout))


def planned_jobs(dry_run_stdout: str) -> dict[str, int]:
    """Job counts per rule from the 'Job stats' table of a dry run."""
    counts, in_table = {}, False
    for line in dry_run_stdout.splitlines():
        parts = line.split()
        if line.startswith("Job stats:"):
            in_table = True
        elif in_table and parts and parts[0] == "total":
            break
        elif in_table and len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    return counts


def run_training_script(
    script: str, manifest: Path, folder: Path, name: str, delay: float = 0.0, stderr=None
) -> subprocess.Popen:
    """Python source ``script`` in a fresh process (stdout captured; stderr where ``stderr`` says) with the
    arguments of a resumable run ``name``: the manifest, its checkpoint ``<name>.pt``, its weights
    ``<name>.safetensors`` in ``folder`` and a delay per image (to stop it part-way)."""
    args = [manifest, folder / f"{name}.pt", folder / f"{name}.safetensors", delay]
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )


def interrupt_once_started(process: subprocess.Popen, started: Path, after: float) -> None:
    """SIGTERM to ``process`` ``after`` seconds after it made the file ``started`` (its loop runs), then
    wait for it to exit."""
    deadline = time.monotonic() + 120  # imports take a while on a loaded machine
    while not started.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.1)
    time.sleep(after)
    assert process.poll() is None, "the run ended before it could be interrupted"
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=120)
