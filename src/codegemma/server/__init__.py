"""The completion server: OpenAI, Ollama and llama.cpp dialects over one engine."""

from .app import create_app, listen

__all__ = ["create_app", "listen"]
