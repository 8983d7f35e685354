"""The CLI on a tiny real checkpoint: outputs, exit codes and one-line errors on bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from codegemma.cli import main, read_cursor


def run(*argv):
    return subprocess.run([sys.executable, "-m", "codegemma.cli", *argv], capture_output=True, text=True, timeout=120)


def test_info(tiny_checkpoint, capsys):
    assert main(["info", str(tiny_checkpoint)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["fim_native"] is True
    assert info["tokenizer"]["special_token_ids"]["<|fim_middle|>"] == 68
    assert info["config"]["head_dim"] == 16


def test_complete_at_cursor(tiny_checkpoint, tmp_path, capsys):
    src = tmp_path / "m.py"
    src.write_text("def add(a, b):\n    return \n\nprint(add(1, 2))\n")
    assert main(["complete", f"{src}:2:12", "--model", str(tiny_checkpoint), "--max-tokens", "8"]) == 0
    out = capsys.readouterr().out
    assert "<|fim" not in out


def test_read_cursor(tmp_path):
    src = tmp_path / "a.py"
    src.write_text("ab\ncd\n")
    assert read_cursor(f"{src}:2:2") == (str(src), "ab\nc", "d\n")
    assert read_cursor(f"{src}:3:1") == (str(src), "ab\ncd\n", "")


def test_generate_and_chat(tiny_checkpoint, capsys):
    assert main(["generate", "def f():", "--model", str(tiny_checkpoint), "--max-tokens", "5"]) == 0
    assert main(["chat", "--message", "hi", "--model", str(tiny_checkpoint), "--max-tokens", "5"]) == 0


def test_interactive_chat(tiny_checkpoint):
    proc = subprocess.run([sys.executable, "-m", "codegemma.cli", "chat", "--model", str(tiny_checkpoint),
                           "--max-tokens", "4"], input="hello\n/reset\nagain\n", capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "chatting with" in proc.stderr


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
    assert "expected a Hugging Face folder" in capsys.readouterr().err


def test_serve_rejects_bad_flags(tiny_checkpoint, capsys):
    assert main(["serve", "--model", str(tiny_checkpoint), "--port", "70000"]) == 1
    assert "--port must be in 1..65535" in capsys.readouterr().err
    assert main(["serve", "--model", str(tiny_checkpoint), "--ctx", "2"]) == 1
