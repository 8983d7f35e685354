"""The sandbox's zygote: programs start from a pre-forked, already isolated process, each in namespaces of its
own, and a Python program behaves as under its own interpreter. (The hostile programs are in test_eval.py and
test_babelcode.py.)"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from codegemma.eval import sandbox
from codegemma.eval.sandbox import Limits, isolated, run_program, run_python

needs_root = pytest.mark.skipif(not isolated(), reason="namespaces and the drop to nobody need root")

# Two at once: each says who it is and what it sees, leaves a file in /tmp, then tries to kill every process it
# can; the other must still finish.
NEIGHBOUR = """\
import os, signal, time
open('/tmp/mine-' + os.environ['HOME'][-8:], 'w').write('x')
time.sleep(0.5)
print(os.getpid(), os.getuid(), *(os.readlink('/proc/self/ns/' + n) for n in ('net', 'mnt', 'ipc')),
      sorted(os.listdir('/tmp')), sorted(p for p in os.listdir('/proc') if p.isdigit()))
try:
    os.kill(-1, signal.SIGKILL)
except OSError:
    pass
"""


@needs_root
def test_each_program_has_namespaces_of_its_own():
    zygote = sandbox.ZYGOTE.proc.pid if sandbox.ZYGOTE.proc else None
    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(lambda _: run_python(NEIGHBOUR), range(2)))
    assert [o.status for o in outcomes] == ["passed", "passed"], outcomes
    seen = [o.stdout.split(" ", 5) for o in outcomes]
    for (pid, uid, net, mnt, ipc, rest), outcome in zip(seen, outcomes):
        assert (pid, uid) == ("1", str(sandbox.NOBODY))
        host = [os.readlink(f"/proc/self/ns/{n}") for n in ("net", "mnt", "ipc")]
        assert all(mine != theirs for mine, theirs in zip((net, mnt, ipc), host))
        assert rest.strip() == f"['mine-{outcome.box[-8:]}'] ['1']"  # its own /tmp file, its own process
    assert seen[0][3:5] != seen[1][3:5]  # (the network namespace, without a network, is the zygote's for all)
    assert zygote is None or sandbox.ZYGOTE.proc.pid == zygote  # the zygote outlived both


def test_the_zygote_is_started_again_when_it_dies():
    assert run_python("print('one')").passed
    sandbox.ZYGOTE.proc.send_signal(signal.SIGKILL)
    sandbox.ZYGOTE.proc.wait()
    assert run_python("print('two')").stdout == "two\n"


PYTHON_EXITS = {  # program -> (status, return code, text in stdout or stderr)
    "import sys\nsys.exit(3)\n": ("error", 3, ""),
    "import sys\nsys.exit('bye')\n": ("error", 1, "bye"),
    "raise KeyError('k')\n": ("error", 1, 'File "program.py", line 1'),
    "import threading, time\nthreading.Thread(target=lambda: (time.sleep(0.2), print('late'))).start()\n":
        ("passed", 0, "late"),
    "import atexit\natexit.register(lambda: print('at exit'))\n": ("passed", 0, "at exit"),
    "import __main__, sys\nassert __name__ == '__main__' and __main__.__dict__ is globals()\nprint(sys.argv)\n":
        ("passed", 0, "['program.py']"),
    "import os\nassert 'CODEGEMMA_SECRET' not in os.environ and os.environ['HOME'] == os.getcwd()\n":
        ("passed", 0, ""),
}


@pytest.mark.parametrize("program", sorted(PYTHON_EXITS))
def test_a_python_program_behaves_as_under_its_own_interpreter(program, monkeypatch):
    monkeypatch.setenv("CODEGEMMA_SECRET", "s3cr3t")
    status, code, text = PYTHON_EXITS[program]
    outcome = run_python(program)
    assert (outcome.status, outcome.returncode) == (status, code), outcome
    assert text in outcome.stdout + outcome.stderr
    assert "sandbox.py" not in outcome.stderr  # (the traceback starts in the program)


def test_collect_returns_regular_files_only():
    script = "mkdir -p out/p0 && printf hi > out/p0/a.class && ln -s /etc/hostname out/link && printf x > other"
    outcome = run_program({}, ["/bin/sh", "-c", script], collect="out")
    assert outcome.status == "passed" and outcome.files == {"out/p0/a.class": b"hi"}


@needs_root
def test_without_root_the_limits_still_hold():
    """The fallback: the same module run as an ordinary user (nobody here) has no namespaces, but its programs
    still run, fail, time out and are killed with their process group."""
    python = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else shutil.which("python3")
    home = Path(tempfile.mkdtemp(prefix="sandbox-fallback-", dir="/var/tmp"))  # (pytest's tmp_path is root's only)
    try:
        home.chmod(0o755)
        shutil.copy(sandbox.__file__, home / "sandbox_copy.py")
        (home / "tmp").mkdir()
        os.chown(home / "tmp", sandbox.NOBODY, sandbox.NOBODY)
        script = ("import sandbox_copy as s\nassert not s.isolated()\n"
                  "print(s.run_python('print(6 * 7)').stdout.strip())\n"
                  "print(s.run_python('assert False').status)\n"
                  "o = s.run_python('import os\\nos.fork()\\nwhile True: pass', s.Limits(timeout=1))\n"
                  "print(o.status, o.duration < 5)\n")
        done = subprocess.run(["setpriv", f"--reuid={sandbox.NOBODY}", f"--regid={sandbox.NOBODY}", "--clear-groups",
                               python, "-I", "-c", f"import sys; sys.path.insert(0, {str(home)!r})\n{script}"],
                              env={"PATH": "/usr/bin:/bin", "TMPDIR": str(home / "tmp")}, capture_output=True,
                              text=True, timeout=60, cwd=home)
        assert done.stdout.split("\n")[:3] == ["42", "failed", "timeout True"], done.stderr
        leftovers = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cwd(p).startswith(str(home))]
        assert leftovers == []
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _cwd(proc: Path) -> str:
    try:
        return os.readlink(proc / "cwd")
    except OSError:
        return ""


def test_limits_reach_the_program():
    outcome = run_python("import resource\nprint(resource.getrlimit(resource.RLIMIT_AS)[0] >> 20, "
                         "resource.getrlimit(resource.RLIMIT_NOFILE)[0])", Limits(memory_mb=512, open_files=32))
    assert outcome.stdout.split() == ["512", "32"]


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
