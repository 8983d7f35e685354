"""The completion server: OpenAI, Ollama and llama.cpp dialects over one engine."""

from .app import create_app

__all__ = ["create_app"]
