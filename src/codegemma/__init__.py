"""codegemma: CodeGemma and Gemma text models in PyTorch, with FIM completion, chat and tooling."""

from .api import CodeGemma, Completion, ModelLoadError, Options, load
from .config import PRESETS, GemmaConfig, preset
from .prompts import ContextFile, chat_prompt, fim_prompt, render

__version__ = "0.1.0"
__all__ = ["PRESETS", "CodeGemma", "Completion", "ContextFile", "GemmaConfig", "ModelLoadError", "Options",
           "chat_prompt", "fim_prompt", "load", "preset", "render"]
