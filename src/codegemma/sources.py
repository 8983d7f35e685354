"""Where a model spec points: "default" (the embedded model), a Hugging Face folder or a .gguf file.

One resolver for every command that takes a model or a tokenizer (load, convert, train, data build).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .errors import CodeGemmaError
from .tokenizer import Tokenizer, load_tokenizer


class ModelLoadError(CodeGemmaError, ValueError):
    """A model path or option that cannot be loaded."""


@dataclass(frozen=True)
class Source:
    kind: Literal["hf", "gguf"]
    path: Path

    @property
    def name(self) -> str:
        return self.path.name if self.kind == "hf" else self.path.stem


def resolve(spec: str | Path) -> Source:
    """"default" assembles the embedded GGUF (once, into the cache); a folder is HF; a file must end in .gguf."""
    if str(spec) == "default":
        from .default_model import default_model_path
        return Source("gguf", default_model_path())
    path = Path(spec)
    if path.is_dir():
        return Source("hf", path)
    if path.suffix == ".gguf" and path.is_file():
        return Source("gguf", path)
    if not path.exists():
        raise ModelLoadError(f"{path}: no such file or folder")
    raise ModelLoadError(f"{path}: expected a Hugging Face folder (config.json + safetensors) or a .gguf file")


def open_tokenizer(spec: str | Path) -> Tokenizer:
    """The tokenizer alone, without loading weights."""
    source = resolve(spec)
    if source.kind == "hf":
        return load_tokenizer(source.path)
    from .weights.gguf import metadata, open_gguf, tokenizer_from_metadata
    return tokenizer_from_metadata(metadata(open_gguf(source.path)), str(source.path))
