"""Generation: sampling functions, the decode loop, and text streaming with stop strings."""

from .loop import GenerationSettings, Step, decode_steps, seeded_generator
from .sampling import SamplingParams, sample
from .text import RowText, StopMatcher, TextEvent, stream_text, tokenizer_safe

__all__ = ["GenerationSettings", "RowText", "SamplingParams", "Step", "StopMatcher", "TextEvent", "decode_steps",
           "sample", "seeded_generator", "stream_text", "tokenizer_safe"]
