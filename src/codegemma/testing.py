"""Small real artefacts for tests and benchmarks: a SentencePiece BPE tokenizer with CodeGemma's special ids."""

from __future__ import annotations

import io
import shutil
import sysconfig
from pathlib import Path

# CodeGemma's id layout (facts document, section 4): pad eos bos unk = 0 1 2 3, FIM 67-70, turns 106/107.
USER_DEFINED = ([f"<unused{i}>" for i in range(4, 67)]
                + ["<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|file_separator|>"]
                + [f"<unused{i}>" for i in range(71, 106)]
                + ["<start_of_turn>", "<end_of_turn>", "\n", "\n\n", "\t"])


def training_lines() -> list[str]:
    """Real source text found on this machine, plus unicode, for a small tokenizer."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    lines: list[str] = []
    for name in ("json/decoder.py", "textwrap.py", "functools.py", "string.py", "bisect.py"):
        lines += (stdlib / name).read_text(encoding="utf-8").splitlines()
    lines += ["héllo wörld ñandú — café", "日本語のテキストと中文文本", "emoji 😀🎉👍 ok", "x = 12345 + 67890",
              "fn main() { println!(\"hi\"); }", "public static void main(String[] args) {}", "Ωμέγα ∑ ∫ √ ≤ ≥"]
    return lines


def train_sentencepiece(folder: Path, vocab_size: int = 1024) -> Path:
    """Writes folder/tokenizer.model: BPE, byte fallback, split digits, no dummy prefix, Gemma's special ids."""
    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(training_lines()), model_writer=buf, model_type="bpe", vocab_size=vocab_size,
        byte_fallback=True, split_digits=True, add_dummy_prefix=False, normalization_rule_name="identity",
        remove_extra_whitespaces=False, allow_whitespace_only_pieces=True, user_defined_symbols=USER_DEFINED,
        pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>",
        unk_piece="<unk>", character_coverage=1.0, minloglevel=2, num_threads=1)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer.model").write_bytes(buf.getvalue())
    return folder / "tokenizer.model"


PACKAGES = ["fastapi", "starlette", "httpx", "pydantic", "click", "jinja2", "uvicorn", "anyio", "safetensors",
            "tokenizers", "gguf", "openai", "ollama", "hypothesis", "schemathesis"]


def machine_corpus(root: Path) -> int:
    """Copies a real corpus: the standard library as one repository, a dozen installed packages as others."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    shutil.copytree(stdlib, root / "cpython-stdlib",
                    ignore=shutil.ignore_patterns("site-packages", "test", "tests", "idlelib", "__pycache__",
                                                  "*.pyc", "lib-dynload", "config-*"))
    site = Path(sysconfig.get_paths()["purelib"])
    n = 0
    for name in PACKAGES:
        if (site / name).is_dir() and n < 12:
            shutil.copytree(site / name, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.so"))
            n += 1
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
