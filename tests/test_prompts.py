"""Prompt formats byte-exact against the CodeGemma report's examples (arXiv 2406.11409, section 2.1), and the one
builder of FIM ids: layouts, context files, the left-to-right fallback and truncation nearest the cursor."""

from __future__ import annotations

import pytest

from codegemma.prompts import (
    ContextFile,
    FimRequest,
    PromptError,
    PromptTooLong,
    build_fim,
    chat_prompt,
    chat_turns,
    encode_prompt,
    fim_prompt,
    left_to_right_prompt,
    render,
)
from codegemma.tokenizer import Tokenizer, from_tokenizer_json

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


@pytest.fixture(scope="module")
def tok(tok_folder):
    return from_tokenizer_json(tok_folder / "tokenizer.json")


@pytest.fixture(scope="module")
def no_fim(tok):
    """The same vocabulary without FIM tokens (as the default model's)."""
    specials = {k: v for k, v in tok.specials.items() if "fim" not in k}
    return Tokenizer(tok.pieces, specials, tok._plain, bos_id=tok.bos_id, eos_id=tok.eos_id, pad_id=tok.pad_id)


CTX = (ContextFile("utils.py", "def helper():\n    return 1\n"), ContextFile("b.py", "B = 2\n"))


@pytest.mark.parametrize("mode", ["psm", "spm", "spm-bavarian"])
def test_build_fim_ids_are_the_rendered_prompt(tok, mode):
    req = FimRequest(PREFIX, SUFFIX, "main.py", CTX, mode, middle_start="re")
    fim = build_fim(tok, req)
    prompt = fim_prompt(PREFIX, SUFFIX, path="main.py", mode=mode, context=CTX, middle_start="re")
    assert fim.native and not fim.truncated and fim.stop == ()
    assert fim.ids == encode_prompt(tok, prompt)
    assert set(fim.stop_ids) == {1, 67, 68, 69, 70, 107}


def test_left_to_right_fallback(no_fim):
    fim = build_fim(no_fim, FimRequest(PREFIX, SUFFIX, "main.py", CTX))
    text = "utils.py\ndef helper():\n    return 1\n\n\nb.py\nB = 2\n\n\nmain.py\n" + PREFIX
    assert render(left_to_right_prompt(PREFIX, path="main.py", context=CTX)) == text
    assert not fim.native and fim.stop == ("\nprint(add(1, 2))",)
    assert fim.ids == encode_prompt(no_fim, left_to_right_prompt(PREFIX, path="main.py", context=CTX))
    assert 67 not in fim.ids and 69 not in fim.ids
    with pytest.raises(PromptError, match="unknown FIM mode"):
        build_fim(no_fim, FimRequest("a", mode="pms"))


def test_budget_drops_far_context_first_then_cuts_near_the_cursor(tok):
    enc = lambda text: tok.encode(text, bos=False)  # noqa: E731
    prefix, suffix = "".join(f"a{i} = {i}\n" for i in range(60)), "".join(f"b{i} = {i}\n" for i in range(60))
    pre, suf = enc(prefix), enc(suffix)
    files = [enc(f"{f.path}\n{f.text}") + [70] for f in CTX]
    # files may take half the budget: room for the nearer file only, so the farther one (first) goes
    budget = 2 * len(files[1]) + 1
    one = build_fim(tok, FimRequest(prefix, suffix, context=CTX), budget=budget)
    room = budget - len(files[1]) - 4  # <bos> and three sentinels
    keep_suffix = room - int(room * 0.75)
    assert one.truncated and len(one.ids) == budget
    assert one.ids == [2, *files[1], 67, *pre[-(room - keep_suffix):], 69, *suf[:keep_suffix], 68]
    # a background fill (no code) keeps the same files as the request that follows it
    fill = build_fim(tok, FimRequest("", "", context=CTX), budget=budget)
    assert fill.ids == [2, *files[1], 67, 69, 68]
    # no files: 3/4 of the room keeps the prefix's end and 1/4 the suffix's start
    cut = build_fim(tok, FimRequest(prefix, suffix), budget=4 + 40)
    assert cut.truncated and cut.ids == [2, 67, *pre[-30:], 69, *suf[:10], 68]
    with pytest.raises(PromptTooLong, match="too small"):
        build_fim(tok, FimRequest(prefix, suffix, path="a/very/long/path/name.py"), budget=5)


def test_chat_turns_for_training_may_end_with_the_model():
    msgs = [{"role": "system", "content": " S "}, {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a"}]
    assert chat_turns(msgs, open_turn=False) == [("user", "S\n\nq"), ("model", "a")]
    with pytest.raises(PromptError, match="last message"):
        chat_turns(msgs)
