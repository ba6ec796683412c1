"""Warm starts (patchinteract/warm_start.py): a job handed to a real warm server runs as the same script run
cold would (argv, directory, environment, streams, sys.path, exit status, errors, signals), with torch already
loaded; a client killed takes its job with it; the server ends with the process that started it. The whole
DAG on warm starts: tests/test_workflow.py (the tiny run, and the cold rerun of its baseline)."""

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import process_alive

from patchinteract.warm_start import SOCKET_PREFIX, SOCKET_VARIABLE, refused_device, remove_stale_sockets, warm_starts

# A job script as Snakemake runs one: `python <file>`, importing patchinteract first.
JOB = textwrap.dedent(
    """
    import json, os, sys, time
    already = "torch" in sys.modules
    import patchinteract
    from pathlib import Path

    mode = sys.argv[1]
    report = dict(argv=sys.argv, cwd=os.getcwd(), path0=sys.path[0], name=__name__, torch_preloaded=already,
                  variable=os.environ.get("JOB_VARIABLE"), socket=os.environ.get("PATCHINTERACT_WARM_SOCKET"),
                  stdin=sys.stdin.readline().strip(), pid=os.getpid())
    print(json.dumps(report))
    print("to stderr", file=sys.stderr)
    if mode == "exit":
        sys.exit(int(sys.argv[2]))
    if mode == "message":
        sys.exit("stopped: a message")
    if mode == "raise":
        raise ValueError("a job's error")
    if mode in ("wait", "term"):
        import signal
        if mode == "term":
            signal.signal(signal.SIGTERM, lambda *_: (Path(sys.argv[2] + ".term").touch(), sys.exit(7)))
        Path(sys.argv[2]).write_text(str(os.getpid()))
        time.sleep(60)
    """
)

# The process that starts the server (Snakemake's place): it starts it, says where, and lives until its stdin ends.
PARENT = textwrap.dedent(
    """
    import json, sys
    from patchinteract.warm_start import start_server
    environment = {}
    start_server("auto", "cpu", sys.argv[1], environment)
    print(json.dumps(environment), flush=True)
    sys.stdin.read()
    """
)


class Server:
    def __init__(self, folder: Path):
        self.log = folder / "warm_start.log"
        self.parent = subprocess.Popen(
            [sys.executable, "-c", PARENT, str(self.log)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.environment = json.loads(self.parent.stdout.readline())
        self.path = Path(self.environment[SOCKET_VARIABLE])

    def stop(self):
        self.parent.stdin.close()
        self.parent.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("warm"))
    yield server
    server.stop()


def job(tmp_path, *args, environment=None, wait=True, stdin="a line\n"):
    script = tmp_path / "job.py"
    script.write_text(JOB)
    env = os.environ | {"JOB_VARIABLE": "set"} | (environment or {})
    command = [sys.executable, str(script), *args]
    if not wait:
        return subprocess.Popen(command, cwd=tmp_path, env=env, stdin=subprocess.PIPE, text=True)
    return subprocess.run(command, cwd=tmp_path, env=env, input=stdin, capture_output=True, text=True, timeout=60)


def report(result) -> dict:
    return json.loads(result.stdout.splitlines()[0])


def wait_for(path: Path, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def running_job(tmp_path, server, mode: str) -> subprocess.Popen:
    """A warm job of ``mode`` (wait, term) that has started: its fork's pid in ``tmp_path/running``."""
    marker = tmp_path / "running"
    marker.unlink(missing_ok=True)
    process = job(tmp_path, mode, str(marker), environment=server.environment, wait=False)
    process.stdin.write("\n")
    process.stdin.flush()
    wait_for(marker)
    return process


def test_a_warm_job_sees_what_a_cold_one_sees_with_torch_loaded(server, tmp_path):
    cold, warm = job(tmp_path, "exit", "0"), job(tmp_path, "exit", "0", environment=server.environment)
    assert cold.returncode == warm.returncode == 0
    assert cold.stderr == warm.stderr == "to stderr\n"
    cold, warm = report(cold), report(warm)
    assert warm.pop("torch_preloaded") and not cold.pop("torch_preloaded")
    assert warm.pop("pid") != cold.pop("pid")
    assert warm == cold == {
        "argv": [str(tmp_path / "job.py"), "exit", "0"], "cwd": str(tmp_path), "path0": str(tmp_path),
        "name": "__main__", "variable": "set", "socket": None, "stdin": "a line",
    }  # fmt: skip
    assert f"job {json.loads(job(tmp_path, 'exit', '0', environment=server.environment).stdout)['pid']}: " in (
        server.log.read_text()
    )


@pytest.mark.parametrize(
    "args, code, stderr",
    [
        (("exit", "3"), 3, "to stderr\n"),
        (("message",), 1, "to stderr\nstopped: a message\n"),
        (("raise",), 1, None),
    ],
)
def test_a_warm_job_ends_as_a_cold_one(server, tmp_path, args, code, stderr):
    cold, warm = job(tmp_path, *args), job(tmp_path, *args, environment=server.environment)
    assert cold.returncode == warm.returncode == code
    assert warm.stderr == cold.stderr
    if stderr is not None:
        assert warm.stderr == stderr
    else:  # the traceback starts at the script, as Python prints it (no frame of the server)
        assert warm.stderr.startswith('to stderr\nTraceback (most recent call last):\n  File "' + str(tmp_path))
        assert warm.stderr.endswith("ValueError: a job's error\n") and "warm_start" not in warm.stderr


def test_sigterm_to_the_job_reaches_its_handler(server, tmp_path):
    process = running_job(tmp_path, server, "term")
    process.send_signal(signal.SIGTERM)  # to the client, as Snakemake or `kill` sends it
    assert process.wait(timeout=30) == 7
    assert (tmp_path / "running.term").exists()


def test_a_job_killed_outright_takes_its_fork_along_and_a_killed_fork_its_client(server, tmp_path):
    process = running_job(tmp_path, server, "wait")
    fork = int((tmp_path / "running").read_text())
    assert fork != process.pid
    process.kill()  # SIGKILL, as Snakemake cancels a job
    process.wait()
    deadline = time.monotonic() + 10
    while process_alive(fork):
        assert time.monotonic() < deadline, "the killed job's fork still runs"
        time.sleep(0.05)

    process = running_job(tmp_path, server, "wait")
    os.kill(int((tmp_path / "running").read_text()), signal.SIGKILL)  # the job itself killed (out of memory)
    assert process.wait(timeout=30) == -signal.SIGKILL


def test_a_client_gone_before_its_request_is_whole_leaves_the_server_serving(server, tmp_path):
    for sent in (b"", struct.pack("!I", 1000) + b"{"):  # nothing, then a header promising more than comes
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(server.path))
            socket.send_fds(client, [sent or b"\0"], [0, 1, 2] if sent else [])
    assert report(job(tmp_path, "exit", "0", environment=server.environment))["torch_preloaded"]


def test_the_server_ends_with_its_parent_and_later_jobs_start_cold(tmp_path):
    server = Server(tmp_path)
    assert report(job(tmp_path, "exit", "0", environment=server.environment))["torch_preloaded"]
    server.stop()
    deadline = time.monotonic() + 10
    while server.path.exists():
        assert time.monotonic() < deadline, "the server outlived its parent"
        time.sleep(0.1)
    cold = job(tmp_path, "exit", "0", environment=server.environment)
    assert cold.returncode == 0 and not report(cold)["torch_preloaded"]
    assert "no warm server" in cold.stderr and "the job starts cold" in cold.stderr


def test_which_runs_start_warm(monkeypatch):
    """auto: the device cpu, or auto where torch cannot give a job a GPU (this CPU build; a CUDA build declines);
    true: any device."""
    import torch

    assert warm_starts("auto", "cpu") and warm_starts("auto", "auto") and warm_starts(True, "cuda:1")
    assert not warm_starts("auto", "cuda") and not warm_starts(False, "cpu")
    assert refused_device("auto", "auto") is None and refused_device("auto", "cpu") is None
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: True)
    assert "built for GPUs: the jobs start cold" in refused_device("auto", "auto")
    assert refused_device("auto", "cpu") is None and refused_device(True, "auto") is None


def test_a_server_killed_with_its_run_leaves_a_folder_the_next_start_removes(tmp_path):
    """SIGKILL to a run's process group kills its server before it can clean up: its socket's folder stays in
    the temporary directory until the next server's start removes it (nothing listens there); a live server's
    folder and one being made (no socket yet) are kept."""
    folders = {name: tmp_path / f"{SOCKET_PREFIX}{name}" for name in ("killed", "live", "new")}
    for folder in folders.values():
        folder.mkdir()
    killed, live = socket.socket(socket.AF_UNIX), socket.socket(socket.AF_UNIX)
    killed.bind(str(folders["killed"] / "socket"))
    killed.close()
    live.bind(str(folders["live"] / "socket"))
    live.listen(1)
    with live:
        remove_stale_sockets(str(tmp_path))
        assert not folders["killed"].exists() and folders["live"].exists() and folders["new"].exists()
