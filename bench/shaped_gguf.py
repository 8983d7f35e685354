"""A Q4_K_M GGUF of a CodeGemma shape with random weights, for bench_gguf.py beside llama.cpp.

    python bench/shaped_gguf.py codegemma-2b        # prints the path (cached under ~/.cache/codegemma/bench)
    python bench/bench_gguf.py --model "$(python bench/shaped_gguf.py codegemma-2b)" --workload-tasks 0

The weights are N(0, 0.02) (norms 1 + N(0, 0.02)), written as F16 with our converter's metadata and a
synthetic 256000-token vocabulary (CodeGemma's special ids, byte tokens, then made-up pieces), then
quantized by llama.cpp's own quantizer (llama-cpp-python, as `make test` builds it). Random weights
make the text meaningless but the work per token exactly that of the real model's shape.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

import numpy as np


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "codegemma" / "bench"


def vocabulary(size: int) -> tuple[list[str], list[float], list[int]]:
    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<2mass>", "[@BOS@]"]
    tokens = specials + [f"<0x{b:02X}>" for b in range(256)]
    types = [3] * len(specials) + [6] * 256  # control, byte
    tokens += [f"\u2581t{i}" for i in range(size - len(tokens))]
    types += [1] * (size - len(types))
    return tokens, [0.0] * len(specials) + [0.0] * 256 + [-float(i) for i in range(size - len(specials) - 256)], types


def build(preset: str) -> Path:
    import gguf
    import llama_cpp

    from codegemma.config import preset as get_preset
    from codegemma.weights.convert import _write_metadata

    out = cache_dir() / f"{preset}-random-q4_k_m.gguf"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    c = get_preset(preset)
    f16 = out.with_suffix(".f16.gguf")
    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(str(f16), c.model_type)
    _write_metadata(w, c, *vocabulary(c.vocab_size))

    d, f, hd = c.hidden_size, c.intermediate_size, c.head_dim
    shapes = {"token_embd.weight": (c.vocab_size, d)}
    for i in range(c.num_hidden_layers):
        shapes.update({f"blk.{i}.attn_norm.weight": (d,), f"blk.{i}.attn_q.weight": (c.num_attention_heads * hd, d),
                       f"blk.{i}.attn_k.weight": (c.num_key_value_heads * hd, d),
                       f"blk.{i}.attn_v.weight": (c.num_key_value_heads * hd, d),
                       f"blk.{i}.attn_output.weight": (d, c.num_attention_heads * hd),
                       f"blk.{i}.ffn_norm.weight": (d,), f"blk.{i}.ffn_gate.weight": (f, d),
                       f"blk.{i}.ffn_up.weight": (f, d), f"blk.{i}.ffn_down.weight": (d, f)})
    shapes["output_norm.weight"] = (d,)

    def dtype(shape: tuple[int, ...]) -> np.dtype:  # norms (1 + N(0, 0.02)) in float32, matrices in float16
        return np.dtype(np.float32 if len(shape) == 1 else np.float16)

    # tensors written one at a time (a 7B model held whole in float16 would be 17 GB of memory)
    for name, shape in shapes.items():
        w.add_tensor_info(name, shape, dtype(shape), int(np.prod(shape)) * dtype(shape).itemsize)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for name, shape in shapes.items():
        data = rng.standard_normal(shape, dtype=np.float32) * 0.02
        w.write_tensor_data((data + 1.0) if len(shape) == 1 else data.astype(np.float16))
        del data
    w.close()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = 15  # LLAMA_FTYPE_MOSTLY_Q4_K_M
    params.nthread = os.cpu_count() or 2
    partial = out.with_suffix(".part")
    if llama_cpp.llama_model_quantize(str(f16).encode(), str(partial).encode(), ctypes.byref(params)) != 0:
        raise SystemExit("llama.cpp could not quantize the model")
    partial.rename(out)
    f16.unlink()
    return out


if __name__ == "__main__":
    print(build(sys.argv[1] if len(sys.argv) > 1 else "codegemma-2b"))
