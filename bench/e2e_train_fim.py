"""End to end: real corpus -> FIM shards -> a small CodeGemma-architecture model trained from scratch on CPU
-> HumanEval single-line infilling, beside an untrained model of the same shape.

    python bench/e2e_train_fim.py --minutes 30 --out runs/e2e [--limit 1033] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from codegemma import load
from codegemma.config import preset
from codegemma.data.fim import FimSettings
from codegemma.data.pipeline import BuildSettings, build
from codegemma.eval.data import load_problems
from codegemma.eval.harness import RunSettings, run
from codegemma.model import GemmaForCausalLM
from codegemma.testing import machine_corpus, train_sentencepiece
from codegemma.train.trainer import TrainConfig, train
from codegemma.weights import save_hf_folder


def middle_nll(model, problems) -> float:
    """Mean negative log-likelihood per token of each canonical middle after its FIM prompt: how well the model
    infills, measured directly (pass@1 of so small a model is near zero either way)."""
    total, count = 0.0, 0
    for p in problems:
        prompt = model.fim_ids(p.prompt, p.suffix).ids
        middle = model.tokenizer.encode(p.canonical, bos=False)
        logits = model.logits(prompt + middle)
        logprobs = torch.log_softmax(logits[len(prompt) - 1:-1], dim=-1)
        total -= logprobs.gather(1, torch.tensor(middle)[:, None]).sum().item()
        count += len(middle)
    return round(total / max(1, count), 4)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", required=True)
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--limit", type=int, default=None, help="infilling tasks to score (default all 1033)")
    p.add_argument("--data-dir", default=None, help="benchmark files (default: the copies shipped in the package)")
    p.add_argument("--preset", default="codegemma-e2e")
    args = p.parse_args()
    out = Path(args.out)
    tok = out / "tokenizer"
    if not (tok / "tokenizer.model").exists():
        train_sentencepiece(tok, vocab_size=preset(args.preset).vocab_size)
    if not (out / "corpus").exists():
        machine_corpus(out / "corpus")
    stats = build([out / "corpus"], out / "shards", str(tok),
                  BuildSettings(seq_len=512, workers=2, data_dir=args.data_dir, fim=FimSettings(fim_rate=0.9)))
    final = out / "train" / "final"
    if final.exists():  # trained already: only (re)score
        result = {"final": str(final), "steps": json.loads(
            (out / "train" / "log.jsonl").read_text().splitlines()[-1])["step"]}
    else:
        result = train(TrainConfig(out=str(out / "train"), config=args.preset, data=str(out / "shards"),
                                   tokenizer=str(tok), steps=1_000_000, batch_size=8, seq_len=512, lr=2e-3,
                                   warmup=50, eval_every=200, save_every=500, time_limit_minutes=args.minutes))
    untrained = out / "untrained"
    if not untrained.exists():
        torch.manual_seed(0)
        model = GemmaForCausalLM(preset(args.preset))
        with torch.no_grad():
            for name, param in model.named_parameters():
                torch.nn.init.zeros_(param) if "norm" in name else torch.nn.init.normal_(param, 0.0, 0.02)
        save_hf_folder(model, untrained)
        (untrained / "tokenizer.model").write_bytes((tok / "tokenizer.model").read_bytes())
    scores, nll = {}, {}
    for name, folder in (("trained", Path(result["final"])), ("untrained", untrained)):
        model = load(folder)
        summary = run("humaneval-infill-single", model, out / f"eval-{name}",
                      RunSettings(limit=args.limit, workers=2), args.data_dir)
        scores[name] = summary["pass@1"]
        nll[name] = middle_nll(model, load_problems("humaneval-infill-single", args.data_dir)[:args.limit])
    log = [json.loads(line) for line in (out / "train" / "log.jsonl").read_text().splitlines()]
    every = max(1, len(log) // 10)
    curve = [(r["step"], round(r["loss"], 3), round(r["val_loss"], 3) if "val_loss" in r else None) for r in log
             if r["step"] % every == 0 or r["step"] == 1 or "val_loss" in r]
    report = {"corpus_tokens": stats["stages"]["tokenize"]["tokens"], "steps": result["steps"],
              "tokens_seen": log[-1]["tokens"], "loss_curve (step, train, val)": curve,
              "single_line_infilling_pass@1": scores,
              "infilling_middle_nll_per_token (FIM prompt, canonical middle)": nll}
    (out / "e2e.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
