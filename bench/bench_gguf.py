"""Our engine beside llama.cpp on the same GGUF file and thread count: prefill (the process's first, and the same
prompt again warm), decode, peak RSS, ratios;
then prompt-lookup speculative decoding on three workloads beside plain decoding and llama.cpp's plain decode.

    python bench/bench_gguf.py [--model default|FILE.gguf] [--prompt 512] [--decode 128] [--threads 2]
                               [--workload-tasks 8]

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
        model(x, start=0)  # the same prompt again, warm (its slots rewritten)
        t3 = time.perf_counter()
    return {"prefill": args.prompt / (t1 - t0), "decode": args.decode / (t2 - t1), "load_s": load_s,
            "prefill_warm": args.prompt / (t3 - t2)}


def workloads(tasks: int) -> dict[str, list[tuple[str, str, int]]]:
    """(prefix, suffix, tokens to generate) per task of each workload, all greedy:
    - edit: an editor's "apply this change": code in a fence, then the model rewriting it with a rename;
    - humaneval: the first HumanEval prompts, continued;
    - fim: multi-line infilling tasks (prefix and suffix; models without FIM tokens continue the prefix)."""
    from codegemma.eval.data import load_problems

    source = prompt_text()
    starts = [i for i in range(len(source)) if source.startswith("\n    def ", i)]
    edits = []
    for start in starts[:tasks]:
        part = source[start + 1:start + 1400]
        part = part[:part.rindex("\n\n") + 1]
        lines = part.replace("text", "body").splitlines(keepends=True)
        edits.append((f"```python\n{part}```\n\nThe same code with `text` renamed to `body`:\n\n```python\n"
                      f"{''.join(lines[:2])}", "", 160))
    humaneval = [(p.prompt, "", 128) for p in load_problems("humaneval")[:tasks]]
    fim = [(p.prompt, p.suffix or "", 64) for p in load_problems("humaneval-infill-multi")[::97][:tasks]]
    return {"edit (rewrite a file with a rename)": edits, "HumanEval prompts": humaneval,
            "FIM, multi-line infilling": fim}


def run_speculation(args) -> dict:
    """Decode tokens/s (first token to last) per workload, plain and speculative, and the share of drafted
    tokens kept; the outputs must be identical."""
    import torch

    import codegemma
    from codegemma.api import Options
    torch.set_num_threads(args.threads)
    m = codegemma.load(args.model)
    from codegemma.generate.speculate import PromptLookup
    counts = {"drafted": 0, "kept": 0}
    verified = PromptLookup.verified

    def counted(self, drafted: int, kept: int) -> None:
        counts["drafted"] += drafted
        counts["kept"] += kept
        verified(self, drafted, kept)

    PromptLookup.verified = counted
    out = {}
    for name, tasks in workloads(args.workload_tasks).items():
        result = {}
        for speculate in (False, True):
            tokens, seconds, texts = 0, 0.0, []
            counts.update(drafted=0, kept=0)
            for prefix, suffix, n in tasks:
                fim = m.fim_ids(prefix, suffix) if suffix else None
                ids = fim.ids if fim else m.tokenizer.encode(prefix, bos=True)
                stamps = []
                opts = Options(max_tokens=n, speculate=speculate, stop_ids=fim.stop_ids if fim else ())
                for ev in m.stream_ids([ids], opts):
                    if ev.token is not None:
                        stamps.append(time.perf_counter())
                        texts.append(ev.token)
                tokens += len(stamps) - 1
                seconds += stamps[-1] - stamps[0]
            result[speculate] = {"tok_s": tokens / seconds, "texts": texts, **counts}
        plain, fast = result[False], result[True]
        out[name] = {"plain": plain["tok_s"], "speculative": fast["tok_s"], "tasks": len(tasks),
                     "identical": plain["texts"] == fast["texts"], "drafted": fast["drafted"], "kept": fast["kept"],
                     "acceptance": fast["kept"] / fast["drafted"] if fast["drafted"] else 0.0}
    return out


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
    llm.reset()  # the same prompt again, warm
    llm.eval(ids)
    t3 = time.perf_counter()
    return {"prefill": args.prompt / (t1 - t0), "decode": args.decode / (t2 - t1), "load_s": load_s,
            "prefill_warm": args.prompt / (t3 - t2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="default")
    p.add_argument("--prompt", type=int, default=512)
    p.add_argument("--decode", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    p.add_argument("--dtype", default=None, help=argparse.SUPPRESS)
    p.add_argument("--dense", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--workload-tasks", type=int, default=8, help="tasks per speculation workload (0: none)")
    p.add_argument("--no-dense", action="store_true", help="skip the --dense row (a 7B shape dense is 17 GB)")
    args = p.parse_args()
    if args.one:
        result = (run_llama(args) if args.one == "llama.cpp" else run_speculation(args) if args.one == "speculation"
                  else run_ours(args))
        result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    runs = [("llama.cpp", []), ("codegemma (default: the file's blocks, bfloat16 activations)", []),
            ("codegemma, the file's blocks, float32 activations", ["--dtype", "float32"]),
            ("codegemma --dense bfloat16", ["--dtype", "bfloat16", "--dense"])][:3 if args.no_dense else 4]
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
    print("| engine | first prefill tok/s | warm prefill tok/s | decode tok/s | peak RSS MiB | load s "
          "| first prefill vs llama.cpp | warm prefill vs llama.cpp | decode vs llama.cpp |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in rows:
        ratios = [f"{r[k] / base[k]:.2f}x" if base else "" for k in ("prefill", "prefill_warm", "decode")]
        print(f"| {name} | {r['prefill']:.0f} | {r['prefill_warm']:.0f} | {r['decode']:.1f} | {r['peak_rss_mib']:.0f} "
              f"| {r['load_s']:.1f} | {' | '.join(ratios)} |")
    if args.workload_tasks <= 0:
        return
    cmd = [sys.executable, __file__, "--one", "speculation", "--model", args.model, "--threads", str(args.threads),
           "--workload-tasks", str(args.workload_tasks)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        print(f"speculation failed:\n{out.stderr[-1500:]}", file=sys.stderr)
        return
    spec = {k: v for k, v in json.loads(out.stdout.strip().splitlines()[-1]).items() if isinstance(v, dict)}
    print(f"\nPrompt-lookup speculative decoding, greedy, decode tokens/s from the first token to the last "
          f"({args.workload_tasks} tasks each); llama.cpp's plain decode above is the baseline:\n")
    print("| workload | plain tok/s | speculative tok/s | speculative vs plain | speculative vs llama.cpp "
          "| drafted tokens kept | same output |")
    print("|---|---|---|---|---|---|---|")
    for name, r in spec.items():
        vs_llama = f"{r['speculative'] / base['decode']:.2f}x" if base else ""
        print(f"| {name} | {r['plain']:.1f} | {r['speculative']:.1f} | {r['speculative'] / r['plain']:.2f}x | "
              f"{vs_llama} | {r['acceptance']:.0%} | {'yes' if r['identical'] else 'NO'} |")


if __name__ == "__main__":
    main()
