"""Warm starts for a local run's jobs: one interpreter imports torch, timm and the job modules once, and
each job continues in a fork of it instead of importing them again (~3 s of CPU per model job).

Every job is still Snakemake's own ``python <script>`` (same script, preamble, working directory,
environment, standard streams, exit status and signals). A script's first import of ``patchinteract``
calls :func:`hand_over`, which, where the run started a warm server, hands the job over:

- the job's process (the *client*) sends its argv, working directory, environment and its stdin,
  stdout and stderr (as file descriptors) over a Unix socket;
- the server forks; the fork takes them over and runs the script as ``__main__``, as Python would;
- the client forwards the signals sent to it (SIGTERM from Snakemake or ``kill``) to the fork, which
  gets a terminal's (Ctrl-C) itself, and exits with the fork's status; a client killed outright
  (SIGKILL) has its fork killed too.

Where no server answers the job runs in its own process as before (a *cold* start). The Snakefile starts
the server for runs on the local executor whose jobs cannot use CUDA (``warm_start`` in
docs/configuration.md): it never initialises CUDA, but forking on CUDA machines is untested.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys

SOCKET_VARIABLE = "PATCHINTERACT_WARM_SOCKET"
SOCKET_PREFIX = "patchinteract-warm-"  # the server's private folder in the temporary directory
# What model jobs import: each fork starts with these loaded (docs/scaling.md, "A job's start").
PRELOAD = (
    "patchinteract.jobs.training",
    "patchinteract.jobs.inference",
    "patchinteract.analyses.semantics.keypoints",
    "patchinteract.analyses.semantics.mae_pretraining",
    "patchinteract.analyses.heads.autoencoder",
    "patchinteract.interaction.interaction_store",
    "patchinteract.models.weights",
    "torch._dynamo",  # every optimizer's first param group imports it
    "torch.distributed.launcher.api",
    "snakemake.script",  # the preamble of every script
)
# Signals sent to a job's process (Snakemake, Slurm, `kill`) reach the fork through its client; those a
# terminal sends to the whole process group reach the fork directly (the server's group is Snakemake's).
FORWARDED_SIGNALS = ("SIGTERM", "SIGHUP", "SIGUSR1", "SIGUSR2")
TERMINAL_SIGNALS = ("SIGINT", "SIGQUIT")
_HEADER = struct.Struct("!I")


# ------------------------------------------------------------------------------------------- the client
def hand_over() -> None:
    """In a job's script whose run has a warm server (the socket's path in the environment): run the job in a
    fork of it and exit with its status (never returns). Elsewhere (no server, not a script, or the server
    gone before the fork): return."""
    import __main__

    path = os.environ.pop(SOCKET_VARIABLE, None)  # the job's own subprocesses start cold
    # Only `python <file>`, as Snakemake runs a script (this runs while its preamble unpickles the job)
    if not path or getattr(__main__, "__spec__", True) is not None or not os.path.isfile(sys.argv[0]):
        return
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(path)
    except OSError as error:
        print(f"patchinteract: no warm server at {path} ({error}); the job starts cold", file=sys.stderr)
        connection.close()
        return
    request = json.dumps({"argv": sys.argv, "cwd": os.getcwd(), "env": dict(os.environ)}).encode()
    socket.send_fds(connection, [_HEADER.pack(len(request)) + request], [0, 1, 2])
    replies = connection.makefile("r")
    started = replies.readline()
    if not started:
        print("patchinteract: the warm server ended; the job starts cold", file=sys.stderr)
        connection.close()
        return
    pid = json.loads(started)["pid"]
    for name in TERMINAL_SIGNALS:  # the fork, in this process's group, gets them from the terminal itself
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    for name in FORWARDED_SIGNALS:
        signal.signal(getattr(signal, name), lambda number, frame: _forward(pid, number))
    ended = replies.readline()
    if not ended:  # the server was killed with the job running: end it, as a killed job ends
        _forward(pid, signal.SIGKILL)
        sys.exit("patchinteract: the warm server ended while the job ran")
    status = json.loads(ended)
    if "signal" in status:  # die of the job's signal, as the job did
        if status["signal"] != signal.SIGKILL:
            signal.signal(status["signal"], signal.SIG_DFL)
        os.kill(os.getpid(), status["signal"])
    os._exit(status["exit"])


def _forward(pid: int, number: int) -> None:
    try:
        os.kill(pid, number)
    except ProcessLookupError:
        pass


# ------------------------------------------------------------------------------------------- the server
def warm_starts(setting: bool | str, device: str) -> bool:
    """Whether a local run starts the warm server: ``warm_start`` true, or auto with the device cpu or auto
    (with auto, the server declines where torch was built for CUDA or ROCm)."""
    return setting is True or (setting == "auto" and device in ("cpu", "auto"))


def refused_device(setting: bool | str, device: str) -> str | None:
    """Why the server does not serve jobs of ``device`` (None: it serves): with ``warm_start`` auto and device
    auto, a torch built for CUDA or ROCm might give the jobs a GPU, and forking for CUDA jobs is untested."""
    import torch

    if setting == "auto" and device == "auto" and (torch.backends.cuda.is_built() or torch.version.hip):
        return f"device auto with torch {torch.__version__}, built for GPUs: the jobs start cold"
    return None


def start_server(setting: bool | str, device: str, log_path: str, environment=os.environ) -> subprocess.Popen:
    """Start the warm server for this process's jobs: ``environment`` (which they inherit) gets the socket's
    path. It listens before this returns (no job finds it missing) and ends when this process does."""
    import tempfile

    remove_stale_sockets(tempfile.gettempdir())
    path = os.path.join(tempfile.mkdtemp(prefix=SOCKET_PREFIX), "socket")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    with open(log_path, "a") as log, listener:
        serving = "import sys; from patchinteract.warm_start import serve; serve(*sys.argv[1:])"
        server = subprocess.Popen(
            [sys.executable, "-c", serving, path, str(listener.fileno()), str(os.getpid()), str(setting), device],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=[listener.fileno()],
        )
    environment[SOCKET_VARIABLE] = path
    return server


def remove_stale_sockets(folder: str) -> None:
    """Remove the socket folders of this user's servers that were killed with their run (nothing listens)."""
    import glob
    import shutil

    for path in glob.glob(os.path.join(folder, f"{SOCKET_PREFIX}*", "socket")):
        if os.stat(path).st_uid != os.getuid():
            continue
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(path)
            except ConnectionRefusedError:
                shutil.rmtree(os.path.dirname(path), ignore_errors=True)
            except OSError:
                pass


def serve(path: str, listening: str, parent: str, setting: str, device: str) -> None:
    """Accept jobs on the socket ``path`` (file descriptor ``listening``) until process ``parent`` ends;
    fork one process per job. Jobs that connect while the imports run wait for them."""
    import gc
    import importlib
    import selectors
    import time

    for name in (*FORWARDED_SIGNALS, *TERMINAL_SIGNALS):  # a group's signal is for the jobs; the run's end ends this
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    listener, parent = socket.socket(fileno=int(listening)), int(parent)
    began = time.perf_counter()
    refusal = refused_device(setting, device)  # ("True" from the command line: any device)
    if refusal:
        print(f"not serving: {refusal}", flush=True)
        _remove(path)
        return
    for name in PRELOAD:  # (the package, imported before this module, installed the torchvision shim)
        importlib.import_module(name)
    gc.freeze()  # the forks' garbage collector leaves what is loaded alone: fewer pages copied per fork
    print(f"serving on {path}: {len(sys.modules)} modules loaded in {time.perf_counter() - began:.1f} s", flush=True)

    wake_reader, wake_writer = socket.socketpair()  # SIGCHLD wakes the loop
    for end in (wake_reader, wake_writer):
        end.setblocking(False)
    signal.set_wakeup_fd(wake_writer.fileno())
    signal.signal(signal.SIGCHLD, lambda number, frame: None)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    selector.register(wake_reader, selectors.EVENT_READ)
    jobs: dict[int, socket.socket] = {}  # pid -> its client's connection
    while os.getppid() == parent:
        for key, _ in selector.select(timeout=1.0):
            if key.fileobj is listener:
                connection, _ = listener.accept()
                pid = _fork_job(connection, [wake_writer, *(item.fileobj for item in selector.get_map().values())])
                if pid:
                    jobs[pid] = connection
                    selector.register(connection, selectors.EVENT_READ, pid)
            elif key.fileobj is wake_reader:
                _drain(wake_reader)
            else:  # a client's end: it was killed, so is its job
                selector.unregister(key.fileobj)
                _forward(key.data, signal.SIGKILL)
        _reap(jobs, selector)
    for pid in jobs:  # the run ended (or was killed) with jobs still running
        _forward(pid, signal.SIGKILL)
    _remove(path)


def _fork_job(connection: socket.socket, inherited: list[socket.socket]) -> int:
    """Fork the job a client asks for (the fork closes ``inherited``, the server's sockets); the fork's pid,
    0 when the request was unreadable or its client gone."""
    request, fds = _read_request(connection)
    if request is None:
        connection.close()
        for fd in fds:
            os.close(fd)
        return 0
    pid = os.fork()
    if pid == 0:
        try:
            for server_socket in (*inherited, connection):
                server_socket.close()
            _run_job(request, fds)
        finally:  # the fork never returns into the server's loop
            os._exit(70)
    for fd in fds:
        os.close(fd)
    print(f"job {pid}: {request['argv'][0]}", flush=True)
    try:
        connection.sendall(json.dumps({"pid": pid}).encode() + b"\n")
    except OSError:
        _forward(pid, signal.SIGKILL)
    return pid


def _read_request(connection: socket.socket) -> tuple[dict | None, list[int]]:
    """A client's request and its three file descriptors; None where the client went away mid-way."""
    fds: list[int] = []
    try:
        message, fds, _, _ = socket.recv_fds(connection, 1 << 16, 3)
        if len(fds) != 3 or len(message) < _HEADER.size:
            return None, fds
        (size,) = _HEADER.unpack_from(message)
        request = message[_HEADER.size :]
        while len(request) < size:
            more = connection.recv(size - len(request))
            if not more:
                return None, fds
            request += more
        return json.loads(request), fds
    except (OSError, ValueError):
        return None, fds


def _reap(jobs: dict[int, socket.socket], selector) -> None:
    """Tell the clients of ended jobs how they ended."""
    while jobs:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if not pid:
            return
        connection = jobs.pop(pid)
        ended = {"signal": os.WTERMSIG(status)} if os.WIFSIGNALED(status) else {"exit": os.WEXITSTATUS(status)}
        print(f"job {pid}: {ended}", flush=True)
        if selector.get_map().get(connection):
            selector.unregister(connection)
        try:
            connection.sendall(json.dumps(ended).encode() + b"\n")
        except OSError:  # its client is gone
            pass
        connection.close()


def _run_job(request: dict, fds: list[int]) -> None:
    """In the fork: become the job's process (streams, directory, environment, argv, the script's folder
    first on sys.path), run the script as ``__main__`` and exit as Python would."""
    import atexit
    import runpy
    import tempfile
    import threading

    signal.set_wakeup_fd(-1)
    for name in ("SIGCHLD", *FORWARDED_SIGNALS, "SIGQUIT"):
        signal.signal(getattr(signal, name), signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    sys.stdin = open(0, closefd=False)
    sys.stdout = open(1, "w", closefd=False, buffering=1 if os.isatty(1) else -1)
    sys.stderr = open(2, "w", closefd=False, errors="backslashreplace", buffering=1)
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    tempfile.tempdir = None  # from the job's TMPDIR
    sys.argv = request["argv"]
    sys.path[0] = os.path.dirname(os.path.realpath(sys.argv[0]))
    code = 0
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
    except SystemExit as stop:
        code = _exit_code(stop.code)
    except KeyboardInterrupt as error:
        _print_from_script(error)
        code = -signal.SIGINT
    except BaseException as error:
        _print_from_script(error)
        code = 1
    try:
        threading._shutdown()  # what the interpreter's exit does: wait for non-daemon threads
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
    if code < 0:  # as Python does after a KeyboardInterrupt
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code)


def _print_from_script(error: BaseException) -> None:
    """The traceback Python prints for an uncaught error, from the script's frame on (not runpy's)."""
    import traceback

    frames = error.__traceback__
    while frames.tb_next and frames.tb_frame.f_code.co_filename != sys.argv[0]:
        frames = frames.tb_next
    traceback.print_exception(type(error), error, frames)


def _exit_code(code) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _drain(reader: socket.socket) -> None:
    try:
        while reader.recv(4096):
            pass
    except BlockingIOError:
        pass


def _remove(path: str) -> None:
    for remove, target in ((os.unlink, path), (os.rmdir, os.path.dirname(path))):
        try:
            remove(target)
        except OSError:
            pass
