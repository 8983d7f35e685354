"""Prompt formats byte-exact against the facts document's examples."""

from __future__ import annotations

import pytest

from codegemma.prompts import ContextFile, PromptError, chat_prompt, encode_prompt, fim_prompt, render
from codegemma.tokenizer import from_tokenizer_json

PREFIX = "def add(a, b):\n    "
SUFFIX = "\n\nprint(add(1, 2))\n"


def test_psm():
    assert render(fim_prompt(PREFIX, SUFFIX)) == (
        "<|fim_prefix|>def add(a, b):\n    <|fim_suffix|>\n\nprint(add(1, 2))\n<|fim_middle|>")


def test_psm_with_path_line():
    assert render(fim_prompt(PREFIX, SUFFIX, path="path/to/file.py")) == (
        "path/to/file.py\n<|fim_prefix|>def add(a, b):\n    <|fim_suffix|>\n\nprint(add(1, 2))\n<|fim_middle|>")


def test_empty_prefix_and_suffix():
    assert render(fim_prompt("", "")) == "<|fim_prefix|><|fim_suffix|><|fim_middle|>"


def test_spm_layouts():
    assert render(fim_prompt("P", "S", mode="spm")) == "<|fim_suffix|>S<|fim_prefix|>P<|fim_middle|>"
    assert render(fim_prompt("P", "S", mode="spm-bavarian")) == "<|fim_prefix|><|fim_suffix|>S<|fim_middle|>P"
    with pytest.raises(PromptError, match="unknown FIM mode"):
        fim_prompt("P", "S", mode="pms")


def test_multi_file_context():
    ctx = [ContextFile("utils.py", "def helper():\n    return 1\n"), ContextFile("b.py", "B = 2\n")]
    assert render(fim_prompt("x = ", "\n", path="main.py", context=ctx)) == (
        "utils.py\ndef helper():\n    return 1\n<|file_separator|>b.py\nB = 2\n<|file_separator|>"
        "main.py\n<|fim_prefix|>x = <|fim_suffix|>\n<|fim_middle|>")


def test_chat_template():
    msgs = [{"role": "user", "content": "Write hello world"}, {"role": "assistant", "content": "print('hi')"},
            {"role": "user", "content": "In C"}]
    assert render(chat_prompt(msgs)) == (
        "<start_of_turn>user\nWrite hello world<end_of_turn>\n<start_of_turn>model\nprint('hi')<end_of_turn>\n"
        "<start_of_turn>user\nIn C<end_of_turn>\n<start_of_turn>model\n")


def test_system_is_folded_into_first_user_turn():
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert render(chat_prompt(msgs)) == (
        "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n")


@pytest.mark.parametrize("msgs, match", [
    ([], "at least one"),
    ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], "alternate"),
    ([{"role": "model", "content": "a"}], "alternate"),
    ([{"role": "user", "content": "a"}, {"role": "model", "content": "b"}], "last message"),
    ([{"role": "robot", "content": "a"}], "unknown role"),
    ([{"role": "user", "content": "a"}, {"role": "system", "content": "b"}, {"role": "user", "content": "c"}],
     "system"),
    ([{"role": "user"}], "string 'role' and 'content'"),
])
def test_bad_chats_are_rejected(msgs, match):
    with pytest.raises(PromptError, match=match):
        chat_prompt(msgs)


def test_encoded_prompt_has_one_bos_and_single_special_ids(tok_folder):
    tok = from_tokenizer_json(tok_folder / "tokenizer.json")
    ids = encode_prompt(tok, fim_prompt("a = '<|fim_suffix|>'\n", "b", path="x.py"))
    assert ids[0] == 2 and ids.count(2) == 1
    assert ids.count(67) == 1 and ids.count(69) == 1 and ids[-1] == 68
    plain = fim_prompt("a = 1\n", "b", path="x.py")
    assert encode_prompt(tok, plain) == tok.encode(render(plain), parse_special=True)
    chat = encode_prompt(tok, chat_prompt([{"role": "user", "content": "hi"}]))
    assert chat[:2] == [2, 106] and chat.count(2) == 1 and chat.count(107) == 1
