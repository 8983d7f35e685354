"""Prefill/decode tokens/s and peak memory of a CodeGemma-shaped model with random weights, beside transformers.

Each (engine, dtype) runs in its own process so peak RSS is its own. On a CUDA machine the script also
checks bf16-on-GPU logits against CPU float32 and reports decode speed against the bandwidth limit.

    python bench/bench_core.py [--preset codegemma-2b] [--prompt 128] [--decode 32] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time

import torch


def build(preset: str, dtype: torch.dtype, engine: str, device: str = "cpu"):
    from codegemma.config import preset as get_preset
    from codegemma.model import GemmaForCausalLM

    config = get_preset(preset)
    torch.manual_seed(0)
    if engine == "codegemma":
        from codegemma.api import large_blocks_from_the_heap

        large_blocks_from_the_heap()  # as codegemma.load() does for a dense model on CPU
        with torch.device("meta"):
            model = GemmaForCausalLM(config)
        model = model.to(dtype).to_empty(device=device)  # never materialised in float32 first
        for p in model.parameters():
            torch.nn.init.normal_(p, 0.0, 0.02)
        return model.eval()
    from transformers import GemmaConfig
    from transformers import GemmaForCausalLM as HF
    hf_config = GemmaConfig(**{k: v for k, v in config.to_hf_dict().items() if k != "architectures"})
    with torch.device(device):
        return HF._from_config(hf_config, dtype=dtype).eval()


def run_one(args) -> dict:
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    model = build(args.preset, dtype, args.engine)
    prompt = torch.randint(3, 1000, (1, args.prompt))
    with torch.inference_mode():
        if args.engine == "codegemma":
            def prefill():
                model.setup_cache(1, args.prompt + args.decode)
                return model(prompt, start=0)

            def step(tok, i, _):
                return model(tok, start=args.prompt + i), None
        else:
            from transformers import DynamicCache

            def prefill():
                out = model(prompt, past_key_values=DynamicCache(), use_cache=True, logits_to_keep=1)
                prefill.cache = out.past_key_values
                return out.logits

            def step(tok, i, cache):
                out = model(tok, past_key_values=cache, use_cache=True)
                return out.logits, out.past_key_values
        t0 = time.perf_counter()
        prefill()  # the first call: what a user's first prompt costs (allocator, oneDNN primitives)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        logits = prefill()
        t1 = time.perf_counter()
        cache = getattr(prefill, "cache", None)
        tok = logits[:, -1].argmax(-1, keepdim=True)
        for i in range(args.decode):
            logits, cache = step(tok, i, cache)
            tok = logits[:, -1].argmax(-1, keepdim=True)
        t2 = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024
    return {"engine": args.engine, "dtype": args.dtype, "prefill_tok_s": args.prompt / (t1 - t0),
            "first_prefill_tok_s": args.prompt / first,
            "decode_tok_s": args.decode / (t2 - t1), "peak_rss_gib": peak}


def cuda_check(args) -> None:
    """bf16 on CUDA against CPU float32 on the same weights; decode speed against the bandwidth bound."""
    if not torch.cuda.is_available():
        print("\nCUDA: not available on this machine; GPU checks skipped.")
        return
    cpu = build(args.preset, torch.float32, "codegemma")
    gpu = build(args.preset, torch.bfloat16, "codegemma", "cpu").to("cuda")
    gpu.load_state_dict({k: v.to(torch.bfloat16) for k, v in cpu.state_dict().items()})
    ids = torch.randint(3, 1000, (1, 64))
    with torch.inference_mode():
        ref = cpu(ids, last=None)[0]
        got = gpu(ids.cuda(), last=None)[0].float().cpu()
    rel = ((got - ref).norm() / ref.norm()).item()
    agree = (got.argmax(-1) == ref.argmax(-1)).float().mean().item()
    x = torch.empty(1 << 28, dtype=torch.uint8, device="cuda")
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(10):
        x.clone()
    torch.cuda.synchronize()
    bandwidth = 2 * 10 * x.numel() / (time.perf_counter() - t)
    weight_bytes = sum(p.numel() * p.element_size() for p in gpu.parameters())
    gpu.setup_cache(1, 64 + 128)
    with torch.inference_mode():
        tok = gpu(ids.cuda())[:, -1].argmax(-1, keepdim=True)
        torch.cuda.synchronize()
        t = time.perf_counter()
        for i in range(128):
            tok = gpu(tok, start=64 + i)[:, -1].argmax(-1, keepdim=True)
        torch.cuda.synchronize()
    speed = 128 / (time.perf_counter() - t)
    print(f"\nCUDA {torch.cuda.get_device_name()}: bf16 vs CPU fp32 relative error {rel:.4f}, "
          f"top-1 agreement {agree:.3f}")
    print(f"decode {speed:.1f} tok/s; bandwidth bound {bandwidth / weight_bytes:.1f} tok/s "
          f"({weight_bytes / 1e9:.2f} GB weights at {bandwidth / 1e9:.0f} GB/s measured)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--preset", default="codegemma-2b")
    p.add_argument("--prompt", type=int, default=128)
    p.add_argument("--decode", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    p.add_argument("--engines", nargs="+", default=["codegemma", "transformers"])
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--engine", default="codegemma", help=argparse.SUPPRESS)
    p.add_argument("--dtype", default="float32", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(run_one(args)))
        return
    rows = []
    for dtype in args.dtypes:
        for engine in args.engines:
            cmd = [sys.executable, __file__, "--one", "--engine", engine, "--dtype", dtype, "--preset", args.preset,
                   "--prompt", str(args.prompt), "--decode", str(args.decode), "--threads", str(args.threads)]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode:
                print(out.stderr[-2000:], file=sys.stderr)
                continue
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{args.preset}, random weights, prompt {args.prompt}, decode {args.decode}, {args.threads} threads, "
          f"{platform.processor() or platform.machine()}, torch {torch.__version__}\n")
    print("| engine | dtype | first prefill tok/s | prefill tok/s | decode tok/s | peak RSS GiB |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['engine']} | {r['dtype']} | {r['first_prefill_tok_s']:.1f} | {r['prefill_tok_s']:.1f} | "
              f"{r['decode_tok_s']:.2f} | {r['peak_rss_gib']:.2f} |")
    cuda_check(args)


if __name__ == "__main__":
    main()
