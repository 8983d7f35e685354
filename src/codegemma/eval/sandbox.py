"""Running untrusted (model-written) Python programs.

Each program runs in its own process group and folder, under resource limits (CPU seconds, address
space, file size, open files, processes), with a wall-clock timeout that kills the whole group,
capped output and a scrubbed environment. As root it also gets fresh network, PID and mount
namespaces (no network; a private /tmp, /var/tmp and /dev/shm; nothing outside visible to signal)
and runs as the unprivileged user nobody. A program passes only if it exits 0 *and* the runner's
end-of-program marker arrives, so exiting early with status 0 before the tests ran does not pass.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

NOBODY = 65534
MARKER = b"\x06codegemma-done"
BOOTSTRAP = """\
import os, sys
fd = int(sys.argv[1])
source = open("program.py", encoding="utf-8").read()
exec(compile(source, "program.py", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
os.write(fd, MARKER)
""".replace("MARKER", repr(MARKER))
PRIVATE_MOUNTS = "mount -t tmpfs -o size=64m,mode=1777 tmpfs /tmp && " \
                 "mount -t tmpfs -o size=16m,mode=1777 tmpfs /var/tmp && " \
                 "mount -t tmpfs -o size=16m,mode=1777 tmpfs /dev/shm && exec \"$@\""


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
    box: str = ""  # the folder it ran in (gone afterwards); its processes had HOME set to it

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def isolated() -> bool:
    """Whether namespaces and a drop to nobody are available (root with unshare and setpriv)."""
    return os.geteuid() == 0 and shutil.which("unshare") is not None and shutil.which("setpriv") is not None


def _box_root() -> Path:
    """Sandbox folders live outside /tmp (which the namespace replaces), in a root-owned 0755 folder."""
    base = Path("/var/lib/codegemma-sandbox") if isolated() else Path(tempfile.gettempdir()) / "codegemma-sandbox"
    base.mkdir(parents=True, exist_ok=True)
    if isolated():
        base.chmod(0o755)
    return base


def _limit(limits: Limits) -> None:
    mb = 1 << 20
    for kind, value in ((resource.RLIMIT_CPU, limits.cpu_seconds), (resource.RLIMIT_AS, limits.memory_mb * mb),
                        (resource.RLIMIT_FSIZE, limits.file_size_mb * mb), (resource.RLIMIT_NOFILE, limits.open_files),
                        (resource.RLIMIT_NPROC, limits.processes), (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(kind, (value, value))


MASKED = ("/tmp/", "/var/tmp/", "/dev/shm/")  # replaced by private tmpfs mounts inside the sandbox


def interpreter() -> str:
    """The Python that runs programs: the base interpreter behind this one (programs need only the standard
    library, and run with -I), never a path under a folder the sandbox masks, such as a venv in /tmp."""
    candidates = [os.path.realpath(sys.executable), os.path.realpath(getattr(sys, "_base_executable", "")),
                  os.path.join(sys.base_prefix, "bin", f"python{sys.version_info.major}.{sys.version_info.minor}"),
                  shutil.which("python3") or ""]
    for path in candidates:
        if path and os.path.isfile(path) and not (isolated() and path.startswith(MASKED)):
            return path
    raise RuntimeError("no Python interpreter outside the folders the sandbox masks (/tmp, /var/tmp, /dev/shm)")


def _command(argv: list[str]) -> list[str]:
    if not isolated():
        return argv
    return ["unshare", "--net", "--pid", "--mount", "--fork", "--kill-child", "--", "sh", "-c", PRIVATE_MOUNTS, "sh",
            "setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--", *argv]


def _tail(path: Path, limit: int) -> str:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - limit))
        return f.read().decode("utf-8", errors="replace")


def run_python(source: str, limits: Limits = Limits()) -> Outcome:
    """Runs a Python program; it passes only if it exits 0 after running to its end (the marker)."""
    return run_program({"program.py": source, "bootstrap.py": BOOTSTRAP},
                       [interpreter(), "-I", "-X", "utf8", "bootstrap.py", "{fd}"], limits, marked=True)


def run_program(files: dict[str, str], argv: list[str], limits: Limits = Limits(), *, marked: bool = False,
                env: dict[str, str] | None = None) -> Outcome:
    """Runs argv in a fresh folder holding `files`, isolated and limited as the module docstring says.

    With `marked`, "{fd}" in argv becomes a pipe the program writes MARKER to when it ran to its end,
    and only then can it pass; otherwise exit status 0 passes."""
    box = Path(tempfile.mkdtemp(prefix="box-", dir=_box_root()))
    read_end, write_end = os.pipe()
    try:
        if isolated():
            box.chmod(0o777)
        for name, text in files.items():
            (box / name).write_text(text, encoding="utf-8")
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(box), "TMPDIR": "/tmp", "LANG": "C.UTF-8",
               "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
        argv = [a.replace("{fd}", str(write_end)) for a in argv]
        with open(box / "stdout", "wb") as out, open(box / "stderr", "wb") as err:
            start = time.perf_counter()
            proc = subprocess.Popen(_command(argv), cwd=box, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=err, pass_fds=(write_end,), start_new_session=True,
                                    preexec_fn=lambda: _limit(limits))
            os.close(write_end)
            write_end = -1
            timed_out = _wait(proc, limits.timeout)
            duration = time.perf_counter() - start
        os.set_blocking(read_end, False)
        try:
            marker = os.read(read_end, 64)
        except BlockingIOError:
            marker = b""
        stdout, stderr = _tail(box / "stdout", limits.output_bytes), _tail(box / "stderr", limits.output_bytes)
        status = _status(timed_out, proc.returncode, marker == MARKER or not marked, stderr)
        return Outcome(status, proc.returncode, stdout, stderr, duration, str(box))
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
        shutil.rmtree(box, ignore_errors=True)


def _wait(proc: subprocess.Popen, timeout: float) -> bool:
    try:
        proc.wait(timeout=timeout)
        return False
    except subprocess.TimeoutExpired:
        return True
    finally:
        try:  # whatever is left of the group goes, timeout or not (a forked child may linger)
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()


def _status(timed_out: bool, returncode: int | None, marked: bool, stderr: str) -> str:
    if timed_out:
        return "timeout"
    if returncode == 0 and marked:
        return "passed"
    if returncode == 0 or "AssertionError" in stderr:
        return "failed"
    return "error"
