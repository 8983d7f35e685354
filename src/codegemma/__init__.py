"""codegemma: CodeGemma and Gemma text models in PyTorch, with FIM completion, chat and tooling.

The names below are imported on first use, so `import codegemma.config` or `codegemma --help` does
not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
_EXPORTS = {"CodeGemma": "api", "Completion": "api", "Options": "api", "load": "api",
            "ModelLoadError": "sources", "PRESETS": "config", "GemmaConfig": "config", "preset": "config",
            "ContextFile": "prompts", "chat_prompt": "prompts", "fim_prompt": "prompts", "render": "prompts"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'codegemma' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
