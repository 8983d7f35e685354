"""The base class of every error this package raises for bad input (a file, a request, a flag, data)."""

from __future__ import annotations


class CodeGemmaError(Exception):
    """Bad input, reported to a user as one line (`codegemma: error: ...`) or as a 4xx by the server."""
