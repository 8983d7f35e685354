"""The public Python API: `load()` and the `CodeGemma` object it returns."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from .config import GemmaConfig
from .generate import GenerationSettings, SamplingParams, TextEvent, stream_text
from .model import GemmaForCausalLM
from .prompts import (
    ContextFile,
    FimPrompt,
    FimRequest,
    build_fim,
    chat_prompt,
    chat_stop_ids,
    encode_prompt,
)
from .sources import ModelLoadError, resolve
from .tokenizer import Tokenizer, load_tokenizer
from .weights import CheckpointError, load_hf_folder

SPECULATE = 7  # the longest prompt-lookup draft verified in one pass (generate/speculate.py): with the fed token,
# 8 rows, one group of the kernels' bfloat16 rows (a 9th row costs a second pass over the weights)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
          "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Completion:
    """A finished generation: text plus what a server needs to report."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    token_ids: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Options:
    """Decoding options shared by generate, complete and chat."""

    max_tokens: int = 256
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stop_ids: tuple[int, ...] = ()
    speculate: bool | None = None  # prompt-lookup speculative decoding; None: where it is exact (GGUF kernels)

    def sampling(self) -> SamplingParams:
        return SamplingParams(self.temperature, self.top_k, self.top_p, self.min_p, self.repetition_penalty, self.seed)


class CodeGemma:
    """A loaded model with its tokenizer: logits, generation, FIM completion and chat."""

    def __init__(self, model: GemmaForCausalLM, tokenizer: Tokenizer, name: str = "", source_format: str = "") -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.source_format = source_format  # "safetensors" or "gguf"
        self.speculate: bool | None = None  # the default of Options.speculate (None: where it is exact)

    @property
    def config(self) -> GemmaConfig:
        return self.model.config

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def fim_native(self) -> bool:
        return self.tokenizer.fim is not None

    def logits(self, ids: Sequence[int]) -> torch.Tensor:
        """float32 logits (len(ids), vocab): one full forward, no cache."""
        x = torch.tensor([list(ids)], dtype=torch.long, device=self.device)
        with torch.inference_mode():
            return self.model(x, last=None)[0].float()

    # Generation from token ids: every public method ends here.
    def stream_ids(self, prompts: Sequence[Sequence[int]], options: Options, *,
                   context: int | None = None) -> Iterator[TextEvent]:
        """Text events for token-id prompts."""
        return stream_text(self.model, self.tokenizer, prompts, self.settings(options), options.stop, context=context)

    def settings(self, options: Options) -> GenerationSettings:
        """The decode loop's settings for options: the end-of-sequence token always stops."""
        stop_ids = tuple(sorted(set(options.stop_ids) | {self.tokenizer.eos_id}))
        speculate = options.speculate if options.speculate is not None else self.speculate
        if speculate is None:
            speculate = self.model.rows_independent()
        return GenerationSettings(options.max_tokens, options.sampling(), stop_ids, SPECULATE if speculate else 0)

    def run(self, prompts: Sequence[Sequence[int]], options: Options) -> list[Completion]:
        out = [Completion("", "length", len(p), 0) for p in prompts]
        for ev in self.stream_ids(prompts, options):
            c = out[ev.row]
            c.text += ev.text
            if ev.token is not None:
                c.completion_tokens += 1
                c.token_ids.append(ev.token)
            if ev.finish_reason:
                c.finish_reason = ev.finish_reason
        return out

    # Plain text generation.
    def generate(self, prompt: str | Sequence[str], *, parse_special: bool = False, **options: Any) -> str | list[str]:
        """Continues `prompt` (or each of several prompts, batched)."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        ids = [self.tokenizer.encode(p, bos=True, parse_special=parse_special) for p in prompts]
        texts = [c.text for c in self.run(ids, Options(**options))]
        return texts[0] if isinstance(prompt, str) else texts

    def stream(self, prompt: str, *, parse_special: bool = False, **options: Any) -> Iterator[str]:
        ids = self.tokenizer.encode(prompt, bos=True, parse_special=parse_special)
        return (ev.text for ev in self.stream_ids([ids], Options(**options)) if ev.text)

    # Fill-in-the-middle.
    def fim_ids(self, prefix: str, suffix: str = "", *, path: str | None = None, mode: str = "psm",
                context: Sequence[ContextFile] = (), middle_start: str = "",
                repo: str | Path | None = None) -> FimPrompt:
        """Prompt ids and stops for a completion between prefix and suffix (left to right without FIM tokens).
        repo: a repository whose code most related to the cursor is added to the context (repo.py), farther
        from the code than `context`."""
        context = tuple(context)
        if repo is not None:
            from .repo import open_index

            context = open_index(repo).related(prefix, suffix, path) + context
        return build_fim(self.tokenizer, FimRequest(prefix, suffix, path, context, mode, middle_start))

    def complete(self, prefix: str, suffix: str = "", *, path: str | None = None, mode: str = "psm",
                 context: Sequence[ContextFile] = (), repo: str | Path | None = None, **options: Any) -> str:
        """The FIM middle between prefix and suffix; never contains a sentinel."""
        return "".join(self.stream_complete(prefix, suffix, path=path, mode=mode, context=context, repo=repo,
                                            **options))

    def stream_complete(self, prefix: str, suffix: str = "", *, path: str | None = None, mode: str = "psm",
                        context: Sequence[ContextFile] = (), repo: str | Path | None = None,
                        **options: Any) -> Iterator[str]:
        fim = self.fim_ids(prefix, suffix, path=path, mode=mode, context=context, repo=repo)
        options.setdefault("max_tokens", 128)
        opts = Options(**options)
        opts = replace(opts, stop_ids=tuple(opts.stop_ids) + fim.stop_ids, stop=tuple(opts.stop) + fim.stop)
        return (ev.text for ev in self.stream_ids([fim.ids], opts) if ev.text)

    # Chat.
    def chat_ids(self, messages: Sequence[Mapping[str, str]]) -> list[int]:
        return encode_prompt(self.tokenizer, chat_prompt(messages))

    def chat(self, messages: Sequence[Mapping[str, str]], **options: Any) -> str:
        return "".join(self.stream_chat(messages, **options))

    def stream_chat(self, messages: Sequence[Mapping[str, str]], **options: Any) -> Iterator[str]:
        ids = self.chat_ids(messages)
        opts = Options(**options)
        opts = replace(opts, stop_ids=tuple(opts.stop_ids) + chat_stop_ids(self.tokenizer))
        return (ev.text for ev in self.stream_ids([ids], opts) if ev.text)


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """None picks float32 on CPU, bfloat16 on CUDA (float16 where the GPU lacks bf16); `load` picks bfloat16
    for a GGUF file read by the quantized kernels."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None:
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if dtype not in DTYPES:
        raise ModelLoadError(f"unknown dtype {dtype!r}; choose float32, bfloat16 or float16")
    return DTYPES[dtype]


def resolve_device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ModelLoadError(f"unknown device {device!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("device cuda was requested but no CUDA GPU is available")
    if dev.type not in ("cpu", "cuda"):
        raise ModelLoadError(f"device {device!r} is not supported; use cpu or cuda")
    return dev


def large_blocks_from_the_heap(threshold: int = 64 << 20, keep: int = 512 << 20) -> None:
    """glibc: serve blocks below `threshold` bytes from the heap, and keep up to `keep` bytes of freed heap.

    By default glibc maps every block over 128 KB afresh (so each prefill's multi-megabyte activations fault
    in zeroed pages again) until frees have raised that threshold, which takes a few calls and depends on
    the order of allocations; and it gives freed memory at the top of the heap back at once, to fault it in
    again on the next call. Measured on the CodeGemma-2B shape (bfloat16, 128-token prompt, 2 threads, six
    prefills in a row): 1.24, 1.21, 1.21, 0.87, 0.83, 0.83 s with the defaults; 0.82, 0.75, 0.75, 0.77,
    0.75, 0.75 s with this; transformers' 0.85, 0.84, 0.91, 0.85, 0.91, 0.86 s. The quantized model (small
    activations, weights dequantized into one reused buffer) gets 8 MiB and 64 MiB: with glibc's own
    adjustment, which only a large free sets off, its 512-token prefill ran 1200-1500 tokens/s depending on
    what loading had freed, and 1700-1900 with these (peak RSS the same or lower). Nothing on other C
    libraries.
    """
    import ctypes
    import os

    try:
        if os.confstr("CS_GNU_LIBC_VERSION"):
            libc = ctypes.CDLL(None)
            libc.mallopt(-3, threshold)  # M_MMAP_THRESHOLD (setting it also stops glibc's own adjustment)
            libc.mallopt(-1, keep)  # M_TRIM_THRESHOLD
    except (ValueError, OSError, AttributeError):
        pass


def load(path: str | Path = "default", *, device: str | torch.device = "cpu",
         dtype: str | torch.dtype | None = None, keep_quantized: bool | None = None) -> CodeGemma:
    """Loads a Hugging Face folder, a .gguf file, or "default" (the embedded model).

    GGUF on CPU: by default (keep_quantized None or True) the projections and the embedding are read in
    place from the memory-mapped file by the quantized kernels (codegemma.kernels), and activations
    are bfloat16 unless `dtype` says otherwise; keep_quantized=False dequantizes every weight to
    `dtype` (float32 by default), as training needs.
    """
    dev = resolve_device(device)
    source = resolve(path)
    gguf = source.kind != "hf"
    if keep_quantized and (not gguf or dev.type != "cpu"):
        raise ModelLoadError("keep_quantized applies to GGUF files on CPU (the kernels read the file's blocks)")
    quantized = gguf and dev.type == "cpu" and keep_quantized is not False
    dt = torch.bfloat16 if quantized and dtype is None else resolve_dtype(dtype, dev)
    if dev.type == "cpu":
        large_blocks_from_the_heap(*((8 << 20, 64 << 20) if quantized else ()))
    try:
        if source.kind == "hf":
            model, tokenizer = load_hf_folder(source.path, device=dev, dtype=dt), load_tokenizer(source.path)
        else:
            from .weights.gguf import load_gguf
            model, tokenizer = load_gguf(source.path, device=dev, dtype=dt, keep_quantized=quantized)
    except CheckpointError as exc:
        raise ModelLoadError(str(exc)) from exc
    return CodeGemma(model, tokenizer, name=source.name,
                     source_format="safetensors" if source.kind == "hf" else "gguf")
