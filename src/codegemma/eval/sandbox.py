"""Running untrusted (model-written) programs.

Each program runs in its own process group and folder, under resource limits (CPU seconds, address
space, file size, open files, processes), with a wall-clock timeout that kills the whole group,
capped output and a scrubbed environment. As root it also gets PID, mount and IPC namespaces of its
own (a private /tmp, /var/tmp, /dev/shm and /proc; no process outside visible or reachable by signal)
inside a network namespace with no network (the zygote's, below), and runs as the unprivileged user
nobody. A program passes only if it exits 0 *and* the runner's end-of-program marker arrives, so
exiting early with status 0 before the tests ran does not pass.

Programs start from a zygote: one Python process per parent, started once (as root where the parent
is root), which keeps SPARES supervisors ready. A supervisor has already created its program's
namespaces and forked the program's process, which waits there, still root, for a request. On a
request the program's process moves into its folder, sets its limits, drops to nobody and either runs
its Python script inside the already started interpreter (argv[0] is PYTHON) or execs its command;
the supervisor enforces the wall-clock timeout and reports the exit status over a socket the parent
passed with the request; the zygote forks a replacement. This saves, per program, an interpreter's
start and the unshare, mount and setpriv executables the sandbox ran before. This module imports only
the standard library: the zygote runs this file as its script.
"""

from __future__ import annotations

import json
import os
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

NOBODY = 65534
MARKER = b"\x06codegemma-done"
MARKER_FD = 3  # the end-of-program pipe inside a program ("{fd}" in argv)
PYTHON = "{python}"  # as argv[0]: the sandbox's Python (interpreter() -I -X utf8), its script run inside the zygote
PRIVATE_MOUNTS = (("/tmp", "size=64m,mode=1777"), ("/var/tmp", "size=16m,mode=1777"),
                  ("/dev/shm", "size=16m,mode=1777"))
MASKED = tuple(path + "/" for path, _ in PRIVATE_MOUNTS)  # replaced by private tmpfs mounts inside the sandbox
BASE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "TMPDIR": "/tmp", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0",
            "PYTHONDONTWRITEBYTECODE": "1"}
# imported once by the zygote, so programs find them loaded (BabelCode's Python header and HumanEval's imports)
PRELOADED = ("array", "bisect", "collections", "datetime", "functools", "hashlib", "heapq", "itertools", "math",
             "queue", "random", "re", "string", "typing", "traceback")


@dataclass(frozen=True)
class Limits:
    timeout: float = 10.0  # wall clock, seconds
    cpu_seconds: int = 10
    memory_mb: int = 1024  # address space
    file_size_mb: int = 16  # any one file, stdout and stderr included
    open_files: int = 64
    processes: int = 64  # per user; binds once the program runs as nobody
    output_bytes: int = 8192  # kept of stdout and of stderr (their tails)


@dataclass
class Outcome:
    status: str  # passed, failed (tests ran and failed, or it exited before they finished), error, timeout
    returncode: int | None
    stdout: str
    stderr: str
    duration: float
    box: str = ""  # the folder it ran in (gone afterwards); its processes had it as working folder and HOME
    files: dict[str, bytes] = field(default_factory=dict)  # what it left under `collect` (path in the box -> bytes)

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def isolated() -> bool:
    """Whether namespaces and a drop to nobody are available (root on Linux)."""
    return os.geteuid() == 0 and sys.platform.startswith("linux")


def box_root() -> Path:
    """Sandbox folders live outside /tmp (which the namespace replaces), in a root-owned 0711 folder: programs
    can reach their own folder (HOME) but not list the others', whose names are random."""
    base = Path("/var/lib/codegemma-sandbox") if isolated() else Path(tempfile.gettempdir()) / "codegemma-sandbox"
    base.mkdir(parents=True, exist_ok=True)
    if isolated():
        base.chmod(0o711)
    return base


def interpreter() -> str:
    """The Python that runs programs: the base interpreter behind this one if nobody can reach it (programs need
    only the standard library, and run with -I), else a system one; never a path under a folder the sandbox
    masks, such as a venv in /tmp. (A pyenv Python under root's 0700 home is out of nobody's reach: started as
    root it would import its standard library from there, which nobody then cannot read.)"""
    candidates = [os.path.realpath(sys.executable), os.path.realpath(getattr(sys, "_base_executable", "")),
                  os.path.join(sys.base_prefix, "bin", f"python{sys.version_info.major}.{sys.version_info.minor}"),
                  os.path.realpath(shutil.which("python3") or ""), "/usr/bin/python3", "/usr/local/bin/python3"]
    for path in candidates:
        if path and os.path.isfile(path) and not (isolated() and (path.startswith(MASKED) or not _public(path))):
            return os.path.realpath(path)
    raise RuntimeError("no Python interpreter that nobody can run outside the folders the sandbox masks "
                       "(/tmp, /var/tmp, /dev/shm)")


def _public(path: str) -> bool:
    """Whether anyone may run the file: every folder above it searchable by others, the file executable by them."""
    path = os.path.realpath(path)
    folders = [p for p in Path(path).parents]
    return all(os.stat(p).st_mode & 0o001 for p in folders) and bool(os.stat(path).st_mode & 0o001)


def _tail(path: Path, limit: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit))
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def run_python(source: str, limits: Limits = Limits()) -> Outcome:
    """Runs a Python program; it passes only if it exits 0 after running to its end (the marker)."""
    return run_program({"program.py": source}, [PYTHON, "program.py"], limits, marked=True)


def run_program(files: dict[str, str | bytes], argv: list[str], limits: Limits = Limits(), *, marked: bool = False,
                env: dict[str, str] | None = None, collect: str | None = None) -> Outcome:
    """Runs argv in a fresh folder holding `files` (name -> text or bytes; a name may hold folders), isolated
    and limited as the module docstring says.

    argv[0] == PYTHON runs the script argv[1] with the sandbox's Python. With `marked`, the program must
    report running to its end: a PYTHON script does so when it finishes; a command writes MARKER to the
    descriptor that "{fd}" in argv becomes. Only a marked program that did can pass; otherwise exit status 0
    passes. With `collect`, the regular files the program left under that folder of the box come back in
    Outcome.files (a compiler's output, say)."""
    box = Path(tempfile.mkdtemp(prefix="box-", dir=box_root()))
    read_end, write_end = os.pipe()
    try:
        if isolated():
            box.chmod(0o777)
        write_files(box, files)
        job = {"box": str(box), "argv": [a.replace("{fd}", str(MARKER_FD)) for a in argv], "marked": marked,
               "env": {**BASE_ENV, "HOME": str(box), **(env or {})}, "limits": asdict(limits)}
        start = time.perf_counter()
        report = ZYGOTE.run(job, write_end)
        duration = time.perf_counter() - start
        os.close(write_end)
        write_end = -1
        os.set_blocking(read_end, False)
        try:
            marker = os.read(read_end, 64)
        except BlockingIOError:
            marker = b""
        stdout, stderr = _tail(box / "stdout", limits.output_bytes), _tail(box / "stderr", limits.output_bytes)
        stderr = stderr or report.get("error", "")
        status = _status(report["timed_out"], report["returncode"], marker == MARKER or not marked, stderr)
        kept = _collect(box, collect) if collect is not None else {}
        return Outcome(status, report["returncode"], stdout, stderr, duration, str(box), kept)
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
        shutil.rmtree(box, ignore_errors=True)


def _collect(box: Path, folder: str, limit: int = 64 << 20) -> dict[str, bytes]:
    """Regular files under box/folder (links and anything else skipped, nothing followed), up to `limit` bytes."""
    kept, total = {}, 0
    for top, _, names in os.walk(box / folder):
        for name in sorted(names):
            path = Path(top, name)
            if path.is_symlink() or not path.is_file() or total + path.stat().st_size > limit:
                continue
            data = kept[str(path.relative_to(box))] = path.read_bytes()
            total += len(data)
    return kept


def write_files(box: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        path = box / name
        if path.parent != box:
            path.parent.mkdir(parents=True, exist_ok=True)
            if isolated():
                for folder in path.relative_to(box).parents:
                    (box / folder).chmod(0o777)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


def _status(timed_out: bool, returncode: int | None, marked: bool, stderr: str) -> str:
    if timed_out:
        return "timeout"
    if returncode == 0 and marked:
        return "passed"
    if returncode == 0 or "AssertionError" in stderr:
        return "failed"
    return "error"


class Zygote:
    """The parent's side: starts the zygote on first use (again if it died, or in a forked parent) and sends it
    one request per program, with a socket for the report and the end-of-program pipe."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.proc: subprocess.Popen | None = None
        self.channel: socket.socket | None = None
        self.owner = -1  # the pid that started it

    def _start(self) -> socket.socket:
        if self.channel is not None and self.owner == os.getpid() and self.proc.poll() is None:
            return self.channel
        if self.channel is not None and self.owner == os.getpid():
            self.channel.close()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        argv = [interpreter(), "-I", "-X", "utf8", os.path.abspath(__file__), str(theirs.fileno())]
        self.proc = subprocess.Popen(argv, env=BASE_ENV, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     pass_fds=(theirs.fileno(),), start_new_session=True, cwd="/")
        theirs.close()
        self.channel, self.owner = ours, os.getpid()
        return ours

    def run(self, job: dict, marker_fd: int) -> dict:
        """Sends a job and waits for its report: returncode (negative: killed by that signal) and timed_out."""
        ours, theirs = socket.socketpair()
        try:
            with self.lock:
                channel = self._start()
                try:
                    socket.send_fds(channel, [json.dumps(job).encode()], [theirs.fileno(), marker_fd])
                except OSError:  # it died: start another
                    self.proc.kill()
                    self.proc.wait()
                    socket.send_fds(self._start(), [json.dumps(job).encode()], [theirs.fileno(), marker_fd])
            theirs.close()
            ours.settimeout(job["limits"]["timeout"] + 60)
            data = b""
            while chunk := ours.recv(65536):
                data += chunk
        except (OSError, TimeoutError) as exc:
            return {"returncode": None, "timed_out": False, "error": f"the sandbox failed: {exc}"}
        finally:
            ours.close()
            theirs.close()
        if not data:
            return {"returncode": None, "timed_out": False, "error": "the sandbox failed: no report"}
        return json.loads(data)


ZYGOTE = Zygote()


# ---- below: what runs in the zygote and its children (as root where the parent is root) ----

CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x08000000, 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 1 << 14, 1 << 18
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
LIBC = None  # the C library, loaded by the zygote (ctypes)
SPARES = 2  # supervisors kept ready, their programs' processes forked and isolated


class Program(NamedTuple):
    """What a program's own process returns to the zygote script's top level: a PYTHON script to run."""
    script: str
    argv: list[str]
    marked: bool


def serve(channel_fd: int) -> Program | None:
    """The zygote's loop. It keeps SPARES supervisors ready, each with its program's process already forked into
    its own namespaces and waiting, and hands each request to one, then forks a replacement. Returns a Program
    only in a program's own process, isolated and limited; returns None when the parent has gone."""
    global LIBC
    import ctypes
    import gc

    for name in PRELOADED:
        __import__(name)
    LIBC = ctypes.CDLL(None, use_errno=True)
    if isolated():  # one network namespace for all its programs: no interface but a loopback that is down
        _check(LIBC.unshare(CLONE_NEWNET), "unshare --net")
    gc.freeze()  # (the collector then leaves the zygote's objects alone, so forks share their pages longer)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # supervisors are reaped as they end
    channel = socket.socket(fileno=channel_fd)
    spares: list[socket.socket] = []
    while True:
        while len(spares) < SPARES:
            spare = _spare(channel, spares)
            if isinstance(spare, Program):
                return spare
            spares.append(spare)
        try:
            data, fds, _, _ = socket.recv_fds(channel, 1 << 20, 2)
        except OSError:
            return None
        if not data:
            return None
        spare = spares.pop(0)
        try:
            socket.send_fds(spare, [data], fds)
        except OSError as exc:  # (it died: the report says so)
            _report(os.dup(fds[0]), {"returncode": None, "timed_out": False, "error": f"the sandbox failed: {exc!r}"})
        spare.close()
        for fd in fds:
            os.close(fd)


def _spare(channel: socket.socket, spares: list[socket.socket]) -> socket.socket | Program:
    """Forks a supervisor; returns the zygote's end of its socket (or, in the program's process, its Program)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    if os.fork() == 0:
        try:
            for sock in (channel, ours, *spares):
                sock.close()
            return _supervise(theirs)
        except BaseException:  # (never back into the zygote's loop: this process is no zygote)
            os._exit(1)
    theirs.close()
    return ours


def _supervise(zygote: socket.socket) -> Program:
    """A supervisor: creates the program's namespaces and forks its process, then waits for a request, hands
    it on, waits for the program (killing it at the timeout) and reports its exit status."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    if isolated():
        _namespaces()
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:
        zygote.close()
        ours.close()
        if isolated():  # its own /proc: the processes of its PID namespace only
            _check(LIBC.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None), "mount /proc")
        return _await_job(theirs)
    theirs.close()
    pidfd = os.pidfd_open(pid)
    data, fds, _, _ = socket.recv_fds(zygote, 1 << 20, 2)
    if not data:  # the zygote has gone (the program's process goes with this one)
        os._exit(0)
    reply_fd, marker_fd = fds
    try:
        job = json.loads(data)
        socket.send_fds(ours, [data], [marker_fd])
        os.close(marker_fd)
        poll = select.poll()
        poll.register(pidfd, select.POLLIN)
        timed_out = not poll.poll(job["limits"]["timeout"] * 1000)
        if timed_out:  # as the first process of its PID namespace, its death takes every process in it along
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        try:  # without namespaces, whatever is left of its process group goes (a forked child may linger)
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        _report(reply_fd, {"returncode": os.waitstatus_to_exitcode(status), "timed_out": timed_out})
    except BaseException as exc:
        os.kill(pid, signal.SIGKILL)
        _report(reply_fd, {"returncode": None, "timed_out": False, "error": f"the sandbox failed: {exc!r}"})
    os._exit(0)


def _await_job(supervisor: socket.socket) -> Program:
    """The program's process, ready in its namespaces (still root): waits for its request, then becomes it."""
    LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # (goes if its supervisor does)
    data, fds, _, _ = socket.recv_fds(supervisor, 1 << 20, 1)
    if not data or not fds:
        os._exit(0)
    supervisor.close()
    return _become_program(json.loads(data), fds[0])


def _report(fd: int, report: dict) -> None:
    os.write(fd, json.dumps(report).encode())
    os.close(fd)


def _namespaces() -> None:
    """New mount, PID and IPC namespaces (the next child is the PID namespace's first process), with private
    tmpfs on /tmp, /var/tmp and /dev/shm; as `unshare --mount --pid --ipc` and `mount -t tmpfs` would. (The
    first process then mounts its own /proc.) The network namespace is the zygote's: creating and tearing down
    one per program cost a fifth of the throughput."""
    _check(LIBC.unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC), "unshare")
    _check(LIBC.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")
    for path, options in PRIVATE_MOUNTS:
        _check(LIBC.mount(b"tmpfs", path.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, options.encode()), f"mount {path}")


def _check(result: int, what: str) -> None:
    if result != 0:
        import ctypes

        raise OSError(ctypes.get_errno(), f"{what}: {os.strerror(ctypes.get_errno())}")


def _limit(limits: dict) -> None:
    mb = 1 << 20
    for kind, value in ((resource.RLIMIT_CPU, limits["cpu_seconds"]), (resource.RLIMIT_AS, limits["memory_mb"] * mb),
                        (resource.RLIMIT_FSIZE, limits["file_size_mb"] * mb),
                        (resource.RLIMIT_NOFILE, limits["open_files"]), (resource.RLIMIT_NPROC, limits["processes"]),
                        (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(kind, (value, value))


def _become_program(job: dict, marker_fd: int) -> Program:
    """In the program's process: its own session and folder, stdout and stderr to files there, limits, nobody,
    the scrubbed environment; then exec the command, or return the PYTHON script for the caller to run."""
    try:
        os.setsid()
        box, argv = job["box"], job["argv"]
        os.chdir(box)
        descriptors = [os.open("/dev/null", os.O_RDONLY),
                       os.open("stdout", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
                       os.open("stderr", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), marker_fd]
        for target, fd in enumerate(descriptors):
            os.dup2(fd, target)
        os.closerange(MARKER_FD + 1, max(os.sysconf("SC_OPEN_MAX"), 1 << 16))
        if not job["marked"]:
            os.close(MARKER_FD)
        _limit(job["limits"])
        if isolated():
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
        LIBC.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # (after the drop, which clears it)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.environ.clear()
        os.environ.update(job["env"])
        if argv[0] == PYTHON:
            return Program(argv[1], argv[1:], job["marked"])
        for ignored in (signal.SIGPIPE, signal.SIGXFSZ):  # (which Python ignores; a command gets the defaults)
            signal.signal(ignored, signal.SIG_DFL)
        os.execvpe(argv[0], argv, job["env"])
    except BaseException as exc:
        os.write(2, f"sandbox: cannot start {job['argv'][0]}: {exc!r}\n".encode())
    os._exit(127)


def run_script(path: str, argv: list[str], marked: bool) -> int:
    """Runs a Python file as `python -I path` would, as the module __main__ (then writes the end marker, where
    asked); returns the exit status the interpreter would give."""
    import builtins
    import types

    main = types.ModuleType("__main__")
    main.__file__, main.__builtins__ = path, builtins
    sys.modules["__main__"], sys.argv = main, argv
    try:
        with open(path, encoding="utf-8") as f:
            source = f.read()
        exec(compile(source, path, "exec"), main.__dict__)
        if marked:
            os.write(MARKER_FD, MARKER)
        return 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    except BaseException as exc:  # the traceback as the interpreter prints it, less this function's frame
        exc.__traceback__ = exc.__traceback__.tb_next
        sys.excepthook(type(exc), exc, exc.__traceback__)
        return 1


def exit_quickly(status: int) -> None:
    """What the interpreter's exit does that a program can see (its threads joined, atexit functions run, output
    flushed), without tearing down the zygote's modules, which took most of a short program's time."""
    import atexit

    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            status = status or 120  # (as Python does when it cannot flush stdout at exit)
    os._exit(status)


if __name__ == "__main__":
    program = serve(int(sys.argv[1]))
    if program is not None:  # (in a program's own process)
        exit_quickly(run_script(*program))
