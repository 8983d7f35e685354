"""Our engine beside llama.cpp on the same GGUF file and thread count: prefill, decode, peak RSS, ratios.

    python bench/bench_gguf.py [--model default|FILE.gguf] [--prompt 512] [--decode 128] [--threads 2]

Each run is its own process (so peak RSS is its own); the prompt is real Python source. The baseline is
the llama.cpp that `make test` builds (llama-cpp-python with portable flags, AMX kernels off: see the
Makefile and scripts/llama_cpp_cmake_args.py); the table's header prints what that build uses.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import sysconfig
import time
from pathlib import Path


def prompt_text() -> str:
    return (Path(sysconfig.get_paths()["stdlib"]) / "textwrap.py").read_text(encoding="utf-8")


def run_ours(args) -> dict:
    import torch

    import codegemma
    torch.set_num_threads(args.threads)
    t = time.perf_counter()
    m = codegemma.load(args.model, dtype=args.dtype, keep_quantized=False if args.dense else None)
    load_s = time.perf_counter() - t
    ids = m.tokenizer.encode(prompt_text())[:args.prompt]
    model = m.model
    with torch.inference_mode():
        model.setup_cache(1, args.prompt + args.decode + 1)
        x = torch.tensor([ids])
        t0 = time.perf_counter()
        tok = model(x, start=0)[:, -1].argmax(-1, keepdim=True)
        t1 = time.perf_counter()
        for i in range(args.decode):
            tok = model(tok, start=args.prompt + i)[:, -1].argmax(-1, keepdim=True)
        t2 = time.perf_counter()
    return {"prefill": args.prompt / (t1 - t0), "decode": args.decode / (t2 - t1), "load_s": load_s}


def llama_build() -> str:
    """The llama-cpp-python version and the CPU features its build uses (AMX must read 0: see the Makefile)."""
    try:
        import llama_cpp
    except ImportError:
        return "llama-cpp-python not installed (make install-test)"
    info = llama_cpp.llama_print_system_info().decode().strip()
    return f"llama-cpp-python {llama_cpp.__version__}, make llama-cpp build; {info}"


def run_llama(args) -> dict:
    from llama_cpp import Llama

    from codegemma.default_model import default_model_path
    path = str(default_model_path()) if args.model == "default" else args.model
    t = time.perf_counter()
    llm = Llama(model_path=path, n_ctx=args.prompt + args.decode + 8, n_batch=args.prompt, n_ubatch=args.prompt,
                n_threads=args.threads, n_threads_batch=args.threads, verbose=False)
    load_s = time.perf_counter() - t
    ids = llm.tokenize(prompt_text().encode(), add_bos=True)[:args.prompt]
    t0 = time.perf_counter()
    llm.eval(ids)
    t1 = time.perf_counter()
    import llama_cpp
    import numpy as np
    n_vocab = llm.n_vocab()
    for _ in range(args.decode):
        last = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1), shape=(n_vocab,))
        llm.eval([int(last.argmax())])
    t2 = time.perf_counter()
    return {"prefill": args.prompt / (t1 - t0), "decode": args.decode / (t2 - t1), "load_s": load_s}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="default")
    p.add_argument("--prompt", type=int, default=512)
    p.add_argument("--decode", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    p.add_argument("--dtype", default=None, help=argparse.SUPPRESS)
    p.add_argument("--dense", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        result = run_llama(args) if args.one == "llama.cpp" else run_ours(args)
        result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    runs = [("llama.cpp", []), ("codegemma (default: the file's blocks, bfloat16 activations)", []),
            ("codegemma, the file's blocks, float32 activations", ["--dtype", "float32"]),
            ("codegemma --dense bfloat16", ["--dtype", "bfloat16", "--dense"])]
    rows = []
    for name, extra in runs:
        cmd = [sys.executable, __file__, "--one", name, "--model", args.model, "--prompt", str(args.prompt),
               "--decode", str(args.decode), "--threads", str(args.threads), *extra]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode:
            print(f"{name} failed:\n{out.stderr[-1500:]}", file=sys.stderr)
            continue
        rows.append((name, json.loads(out.stdout.strip().splitlines()[-1])))
    base = dict(rows).get("llama.cpp")
    print(f"model {args.model}, prompt {args.prompt} tokens, decode {args.decode}, {args.threads} threads, "
          f"{platform.machine()}")
    print(f"llama.cpp baseline: {llama_build()}\n")
    print("| engine | prefill tok/s | decode tok/s | peak RSS MiB | load s | prefill vs llama.cpp "
          "| decode vs llama.cpp |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows:
        ratio = (f"{r['prefill'] / base['prefill']:.2f}x", f"{r['decode'] / base['decode']:.2f}x") if base else ("", "")
        print(f"| {name} | {r['prefill']:.0f} | {r['decode']:.1f} | {r['peak_rss_mib']:.0f} | {r['load_s']:.1f} | "
              f"{ratio[0]} | {ratio[1]} |")


if __name__ == "__main__":
    main()
