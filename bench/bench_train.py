"""Training throughput: tokens/s on CPU for the tiny and ~100M presets (ours beside transformers' Gemma on the
same shapes, same batch), and on CUDA, where available, with model FLOPs utilisation for a 2B-shaped model.

    python bench/bench_train.py [--steps 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from codegemma.config import preset
from codegemma.model import GemmaForCausalLM


def flops_per_token(cfg, seq_len: int) -> float:
    """6N for the weights plus attention (Kaplan/PaLM accounting), forward and backward."""
    n = sum([cfg.hidden_size * cfg.num_attention_heads * cfg.head_dim * 2,
             cfg.hidden_size * cfg.num_key_value_heads * cfg.head_dim * 2,
             cfg.hidden_size * cfg.intermediate_size * 3]) * cfg.num_hidden_layers + cfg.vocab_size * cfg.hidden_size
    attention = 12 * cfg.num_hidden_layers * cfg.num_attention_heads * cfg.head_dim * seq_len / 2
    return 6 * n + attention


def step_rate(model, forward, vocab: int, batch: int, seq_len: int, steps: int, device: str, amp: bool) -> float:
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    x = torch.randint(3, vocab, (batch, seq_len + 1), device=device)

    def one() -> None:
        with torch.autocast(device, dtype=torch.bfloat16, enabled=amp):
            logits = forward(x[:, :-1])
        F.cross_entropy(logits.float().flatten(0, 1), x[:, 1:].flatten()).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    one()  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        one()
    if device == "cuda":
        torch.cuda.synchronize()
    return steps * batch * seq_len / (time.perf_counter() - t)


def ours(cfg, device: str):
    torch.manual_seed(0)
    model = GemmaForCausalLM(cfg).to(device)
    return model, (lambda x: model(x, last=None))


def transformers_model(cfg, device: str):
    from transformers import GemmaConfig
    from transformers import GemmaForCausalLM as HF
    hf = HF(GemmaConfig(**{k: v for k, v in cfg.to_hf_dict().items() if k != "architectures"})).to(device)
    return hf, (lambda x: hf(x).logits)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.threads} threads, torch {torch.__version__}\n")
    print("| preset | device | batch x seq | ours tok/s | transformers tok/s | MFU |")
    print("|---|---|---|---|---|---|")
    for name, batch, seq in (("tiny", 8, 128), ("codegemma-100m", 4, 256)):
        cfg = preset(name)
        rates = [step_rate(*build(cfg, "cpu"), cfg.vocab_size, batch, seq, args.steps, "cpu", False)
                 for build in (ours, transformers_model)]
        print(f"| {name} | cpu float32 | {batch} x {seq} | {rates[0]:.0f} | {rates[1]:.0f} | |")
    if torch.cuda.is_available():
        cfg = preset("codegemma-2b")
        model, forward = ours(cfg, "cuda")
        rate = step_rate(model, forward, cfg.vocab_size, 4, 1024, args.steps, "cuda", True)
        peak = {"H100": 989e12, "H200": 989e12, "A100": 312e12}.get(
            next((k for k in ("H100", "H200", "A100") if k in torch.cuda.get_device_name()), ""), 0)
        mfu = rate * flops_per_token(cfg, 1024) / peak if peak else float("nan")
        print(f"| codegemma-2b | {torch.cuda.get_device_name()} bf16 autocast | 4 x 1024 | {rate:.0f} | | "
              f"{100 * mfu:.1f}% |")
    else:
        print("\nCUDA: not available on this machine; the 2B MFU row needs a GPU.")


if __name__ == "__main__":
    main()
