"""What keeps the default model's memory down (bench/bench_gguf.py measures peak RSS beside llama.cpp)."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from codegemma.spm import Vocabulary
from codegemma.tokenizer import Pieces, raw_piece_bytes


def test_loading_the_default_model_imports_neither_dynamo_nor_the_gguf_package():
    """Building the model on the meta device once imported all of torch._dynamo (1.5 s, some 65 MB), and reading
    the file the gguf package with its tokenizer and YAML modules; the cached kernels load without setuptools."""
    code = ("import sys, codegemma\ncodegemma.load('default')\n"
            "print(sorted({m.split('.')[0] if m.split('.')[0] != 'torch' else m for m in sys.modules} & "
            "{'torch._dynamo', 'torch._inductor', 'sympy', 'gguf', 'setuptools', 'yaml', 'sentencepiece'}))")
    subprocess.run([sys.executable, "-c", "import codegemma; codegemma.load('default')"], check=True)  # builds
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_vocabulary_answers_as_a_dict_of_its_pieces():
    rng = random.Random(0)
    pieces = [bytes(rng.choices(b"ab\xe2\x96\x81", k=rng.randint(1, 4))) for _ in range(3000)]
    expected = {p: i for i, p in enumerate(pieces)}  # duplicates: the last id wins
    vocab = Vocabulary(pieces)
    for probe in pieces + [b"", b"zz", b"ab" * 5]:
        assert vocab.get(probe) == expected.get(probe)
    assert vocab[pieces[7]] == expected[pieces[7]]
    with pytest.raises(KeyError):
        vocab[b"not a piece"]


def test_pieces_read_like_a_list_of_bytes():
    parts = [b"", b"a", "\u2581x".encode(), b"\xff", b"tail"]
    pieces = Pieces(parts)
    assert len(pieces) == 5 and list(pieces) == parts and pieces[1:3] == parts[1:3]
    for bad in (5, -1):
        with pytest.raises(IndexError):
            pieces[bad]


def test_metadata_arrays_stay_compact_and_give_back_the_file_bytes(tmp_path):
    """Strings stay in the mapping (bytes exactly as written, text with invalid UTF-8 escaped), numbers in an
    array; the tokenizer's pieces come from those bytes."""
    import gguf
    import numpy as np

    from codegemma.weights.gguf_file import GGUFFile, StringArray

    path = tmp_path / "t.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    pieces = [b"a", b"\xff\xfe", "\u2581x".encode(), b"<0x41>"]
    w.add_array("tokenizer.ggml.tokens", pieces)
    w.add_array("tokenizer.ggml.scores", [0.5, -1.25, 2.0, 0.0])
    w.add_tensor("t", np.zeros((2, 32), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    meta = GGUFFile(path).metadata
    tokens, scores = meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.scores"]
    assert isinstance(tokens, StringArray) and [tokens.raw(i) for i in range(len(tokens))] == pieces
    assert list(tokens) == ["a", "\udcff\udcfe", "\u2581x", "<0x41>"]
    assert tokens[1].encode("utf-8", "surrogateescape") == b"\xff\xfe"
    assert scores.typecode == "f" and list(scores) == [0.5, -1.25, 2.0, 0.0]
    assert [raw_piece_bytes(p) for p in pieces] == [b"a", b"\xff\xfe", b" x", b"A"]
