"""The CLI on a tiny real checkpoint: outputs, exit codes and one-line errors on bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from codegemma import load
from codegemma.cli import build_parser, main
from codegemma.cli.complete import read_cursor
from codegemma.prompts import ContextFile


def run(*argv):
    return subprocess.run([sys.executable, "-m", "codegemma.cli", *argv], capture_output=True, text=True, timeout=120)


def test_info(tiny_checkpoint, capsys):
    assert main(["info", str(tiny_checkpoint)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["fim_native"] is True
    assert info["tokenizer"]["special_token_ids"]["<|fim_middle|>"] == 68
    assert info["config"]["head_dim"] == 16


@pytest.fixture(scope="module")
def cg(tiny_checkpoint):
    return load(tiny_checkpoint)


def test_complete_at_cursor(tiny_checkpoint, cg, tmp_path, capsys):
    src = tmp_path / "m.py"
    src.write_text("def add(a, b):\n    return \n\nprint(add(1, 2))\n")
    assert main(["complete", f"{src}:2:12", "--model", str(tiny_checkpoint), "--max-tokens", "8"]) == 0
    expected = cg.complete("def add(a, b):\n    return ", "\n\nprint(add(1, 2))\n", path=str(src), max_tokens=8)
    assert capsys.readouterr().out == expected + "\n"


def test_complete_with_context_and_path_equals_the_api(tiny_checkpoint, cg, tmp_path, capsys):
    util = tmp_path / "util.py"
    util.write_text("def helper():\n    return 1\n")
    argv = ["complete", "--prefix", "x = ", "--suffix", "\n", "--path", "pkg/main.py", "--context", str(util),
            "--mode", "spm", "--model", str(tiny_checkpoint), "--max-tokens", "12"]
    assert main(argv) == 0
    expected = cg.complete("x = ", "\n", path="pkg/main.py", mode="spm", max_tokens=12,
                           context=[ContextFile(str(util), util.read_text())])
    assert capsys.readouterr().out == expected + "\n"


def test_read_cursor(tmp_path):
    src = tmp_path / "a.py"
    src.write_text("ab\ncd\n")
    assert read_cursor(f"{src}:2:2") == (str(src), "ab\nc", "d\n")
    assert read_cursor(f"{src}:3:1") == (str(src), "ab\ncd\n", "")


def test_generate_and_chat(tiny_checkpoint, cg, capsys):
    assert main(["generate", "def f():", "--model", str(tiny_checkpoint), "--max-tokens", "5"]) == 0
    assert capsys.readouterr().out == cg.generate("def f():", max_tokens=5) + "\n"
    assert main(["chat", "--message", "hi", "--system", "be brief", "--model", str(tiny_checkpoint),
                 "--max-tokens", "5"]) == 0
    expected = cg.chat([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}], max_tokens=5)
    assert capsys.readouterr().out == expected + "\n"


def test_interactive_chat(tiny_checkpoint, cg):
    proc = subprocess.run([sys.executable, "-m", "codegemma.cli", "chat", "--model", str(tiny_checkpoint),
                           "--max-tokens", "4"], input="hello\n/reset\nagain\n", capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "chatting with" in proc.stderr
    first = cg.chat([{"role": "user", "content": "hello"}], max_tokens=4)
    second = cg.chat([{"role": "user", "content": "again"}], max_tokens=4)  # /reset forgot the first turn
    assert proc.stdout == f"> {first}\n> > {second}\n> "  # the third prompt answered /reset


def test_output_into_a_closed_pipe_exits_0(tiny_checkpoint):
    """`codegemma generate ... | head -c 1`: the reader leaves early; that is not an error."""
    proc = subprocess.run(f"{sys.executable} -m codegemma.cli generate 'def f():' --model {tiny_checkpoint} "
                          "--max-tokens 200 | head -c 1 >/dev/null; echo ${PIPESTATUS[0]}",
                          shell=True, executable="/bin/bash", capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "0", proc.stderr
    assert "Traceback" not in proc.stderr and "error" not in proc.stderr


def test_debug_shows_the_traceback():
    quiet = run("info", "/no/such/model")
    loud = run("--debug", "info", "/no/such/model")
    assert quiet.returncode == loud.returncode == 1
    assert "Traceback" not in quiet.stderr and "Traceback" in loud.stderr
    assert loud.stderr.strip().splitlines()[-1] == quiet.stderr.strip()


def test_the_command_set_is_frozen():
    """Commands and their flags are an interface: change this list only on purpose (and in the README)."""
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    flags = {name: sorted(o for a in p._actions for o in a.option_strings if o.startswith("--"))
             for name, p in sub.choices.items()}
    model = ["--dense", "--device", "--dtype", "--model"]
    sampling = ["--max-tokens", "--min-p", "--no-speculate", "--repetition-penalty", "--seed", "--stop",
                "--temperature", "--top-k", "--top-p"]
    assert sorted(flags) == ["chat", "complete", "convert", "data", "eval", "explain", "fix", "generate", "index",
                             "info", "learn", "lsp", "serve", "stats", "train"]
    assert flags["generate"] == sorted(["--debug", "--help", "--parse-special", *model, *sampling])
    assert flags["complete"] == sorted(["--context", "--debug", "--help", "--mode", "--path", "--prefix", "--suffix",
                                        *model, *sampling])
    assert flags["chat"] == sorted(["--debug", "--help", "--message", "--system", *model, *sampling])
    assert flags["serve"] == sorted(["--api-key", "--cache-ram", "--cache-reuse", "--ctx", "--debug", "--help",
                                     "--events-log", "--host", "--name", "--no-prefix-cache", "--parallel", "--port",
                                     "--no-speculate", "--queue", "--repo", *model])
    assert flags["info"] == sorted(["--debug", "--help", *model])
    assert flags["learn"] == sorted(["--db", "--debug", "--export", "--help", "--host", "--port", *model])
    assert flags["fix"] == sorted(["--debug", "--help", "--language", "--write", *model])
    assert flags["explain"] == sorted(["--debug", "--help", *model, *sampling])


def test_importing_the_cli_does_not_load_torch():
    code = "import sys, codegemma.cli; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


@pytest.mark.parametrize("argv, message", [
    (["info", "/no/such/model"], "no such file or folder"),
    (["complete", "x.py:1", "--model", "{ckpt}"], "expected FILE:LINE:COL"),
    (["complete", "{src}:9:1", "--model", "{ckpt}"], "line 9 is out of range"),
    (["complete", "{src}:1:99", "--model", "{ckpt}"], "column 99 is out of range"),
    (["complete", "{bin}:1:1", "--model", "{ckpt}"], "is not UTF-8"),
    (["complete", "--model", "{ckpt}"], "nothing to complete"),
    (["generate", "x", "--model", "{ckpt}", "--temperature", "-1"], "temperature must be >= 0"),
    (["generate", "x", "--model", "{ckpt}", "--max-tokens", "-3"], "max-tokens must be >= 0"),
    (["complete", "--prefix", "a", "--model", "{ckpt}", "--mode", "psm", "--context", "/no/file"], "context file"),
    (["complete", "--prefix", "a", "--model", "{ckpt}", "--context", "{bin}"], "is not UTF-8"),
    (["convert", "{ckpt}", "{src}.gguf", "--type", "q2_k"], "unknown output type"),
])
def test_bad_input_is_one_line_and_nonzero(argv, message, tiny_checkpoint, tmp_path, capsys):
    src = tmp_path / "a.py"
    src.write_text("x = 1\n")
    (tmp_path / "b.bin").write_bytes(b"\xff\xfe\x00bad")
    argv = [a.format(ckpt=tiny_checkpoint, src=src, bin=tmp_path / "b.bin") for a in argv]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("codegemma: error:") and message in err and len(err.splitlines()) == 1


def test_exit_codes_from_a_real_process(tiny_checkpoint):
    bad = run("info", "/no/such/model")
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    usage = run("generate")
    assert usage.returncode == 2
    unknown = run("frobnicate")
    assert unknown.returncode == 2


def test_convert_both_ways(tiny_checkpoint, tmp_path, capsys):
    gguf = tmp_path / "m.gguf"
    assert main(["convert", str(tiny_checkpoint), str(gguf), "--type", "q8_0"]) == 0
    assert main(["convert", str(gguf), str(tmp_path / "back")]) == 0
    assert main(["info", str(tmp_path / "back")]) == 0
    assert json.loads(capsys.readouterr().out.split("\n", 2)[-1])["fim_native"] is True
    assert main(["convert", str(tmp_path / "nothing"), str(tmp_path / "x.gguf")]) == 1
    assert "nothing: no such file or folder" in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("x")
    assert main(["convert", str(tmp_path / "notes.txt"), str(tmp_path / "x.gguf")]) == 1
    assert "expected a Hugging Face folder" in capsys.readouterr().err


def test_serve_rejects_bad_flags(tiny_checkpoint, capsys):
    assert main(["serve", "--model", str(tiny_checkpoint), "--port", "70000"]) == 1
    assert "--port must be in 1..65535" in capsys.readouterr().err
    assert main(["serve", "--model", str(tiny_checkpoint), "--ctx", "2"]) == 1
    assert "--ctx must be >= 16" in capsys.readouterr().err
