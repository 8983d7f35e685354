"""Generation: sampling functions, the decode loop, and text streaming with stop strings."""

from .loop import GenerationSettings, Step, decode_steps
from .sampling import SamplingParams, sample
from .text import StopMatcher, TextEvent, stream_text

__all__ = ["GenerationSettings", "SamplingParams", "Step", "StopMatcher", "TextEvent", "decode_steps", "sample",
           "stream_text"]
