"""Tokenizer parity with transformers and sentencepiece on a SentencePiece BPE model trained here."""

from __future__ import annotations

import pytest

from codegemma.tokenizer import TokenizerError, Utf8Stream, from_sentencepiece, from_tokenizer_json, load_tokenizer

TEXTS = [
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
    "  leading spaces and trailing  ",
    "\ttabs\tand\r\nCRLF\r\n\n\n\nblank lines",
    "digits 1234567890 and 3.14159",
    "unicode: héllo, 日本語, 中文, emoji 😀🎉, combining e\u0301 a\u0308",
    "public static void main(String[] args) { System.out.println(\"hi\"); }",
    "",
    " ",
    "x",
]
SPECIAL_TEXT = "prefix <|fim_prefix|>def f():<|fim_suffix|>\n<|fim_middle|><start_of_turn>user\n<end_of_turn><eos>"


@pytest.fixture(scope="module")
def toks(tok_folder):
    return from_tokenizer_json(tok_folder / "tokenizer.json"), from_sentencepiece(tok_folder / "tokenizer.model")


@pytest.fixture(scope="module")
def hf(tok_folder):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(str(tok_folder))


@pytest.mark.parametrize("text", TEXTS)
def test_parity_with_sentencepiece_and_transformers(toks, hf, tok_folder, text):
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=str(tok_folder / "tokenizer.model"))
    json_tok, sp_tok = toks
    expected = [2] + sp.encode(text)
    assert json_tok.encode(text) == expected
    assert sp_tok.encode(text) == expected
    assert [2] + hf(text, add_special_tokens=False).input_ids == expected


def test_parse_special_matches_transformers(toks, hf):
    for tok in toks:
        expected = [2] + hf(SPECIAL_TEXT, add_special_tokens=False).input_ids
        assert tok.encode(SPECIAL_TEXT, parse_special=True) == expected


def test_special_ids_are_codegemmas(toks):
    for tok in toks:
        ids = {t: tok.token_id(t) for t in ("<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
                                             "<|file_separator|>", "<start_of_turn>", "<end_of_turn>")}
        assert list(ids.values()) == [67, 68, 69, 70, 106, 107]
        assert (tok.bos_id, tok.eos_id, tok.pad_id) == (2, 1, 0)
        assert tok.fim is not None and (tok.fim.prefix, tok.fim.middle, tok.fim.suffix) == (67, 68, 69)
        assert tok.encode("<|fim_middle|>", bos=False, parse_special=True) == [68]


def test_special_text_in_a_users_file_stays_text(toks):
    for tok in toks:
        ids = tok.encode(SPECIAL_TEXT)
        assert not set(ids[1:]) & {0, 1, 2, 67, 68, 69, 70, 106, 107}
        assert tok.decode(ids) == SPECIAL_TEXT


@pytest.mark.parametrize("text", TEXTS)
def test_no_dummy_prefix_and_exact_round_trip(toks, text):
    for tok in toks:
        ids = tok.encode(text, bos=False)
        assert tok.decode(ids) == text
        if text and not text[0].isspace():
            assert not tok.decode(ids[:1]).startswith(" ")


def test_bos_added_once(toks):
    for tok in toks:
        assert tok.encode("<bos>hi", parse_special=True).count(2) == 1
        assert tok.encode("hi", bos=False)[0] != 2


def test_utf8_stream_never_splits_a_character(toks):
    text = "😀日本語ü"
    for tok in toks:
        stream, chunks = Utf8Stream(), []
        for i in tok.encode(text, bos=False):
            chunks.append(stream.feed(tok.pieces[i]))
        chunks.append(stream.flush())
        assert "".join(chunks) == text
        assert not any("\ufffd" in c for c in chunks)
    stream = Utf8Stream()
    assert [stream.feed(b) for b in (b"\xf0", b"\x9f", b"\x98", b"\x80")] == ["", "", "", "😀"]


def test_bad_tokenizer_files(tmp_path):
    (tmp_path / "tokenizer.model").write_bytes(b"\x00garbage\xff" * 10)
    with pytest.raises(TokenizerError, match="tokenizer.model"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(TokenizerError, match="tokenizer.json"):
        load_tokenizer(tmp_path)
    with pytest.raises(TokenizerError, match="no tokenizer"):
        load_tokenizer(tmp_path / "missing")


def test_decode_rejects_unknown_ids(toks):
    with pytest.raises(TokenizerError, match="outside the vocabulary"):
        toks[0].decode([5, 10**6])
