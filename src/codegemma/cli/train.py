"""`codegemma train`: continued pretraining, SFT or LoRA; resumes from the run folder's last checkpoint."""

from __future__ import annotations

import argparse
import json

HELP = "continued pretraining, SFT or LoRA; resumes from DIR's last checkpoint"
FLAGS = {  # flag -> (type, help); every one is also a key of the TOML/YAML settings file
    "init": (str, "model to start from: HF folder, .gguf or 'default' (continued pretraining, SFT, LoRA)"),
    "config": (str, "preset to train from scratch (see `codegemma.PRESETS`), instead of --init"),
    "data": (str, "token shards from `codegemma data build` (pretrain) or chat JSONL (sft; lora takes either)"),
    "mode": (str, "pretrain, sft or lora (default pretrain)"),
    "tokenizer": (str, "tokenizer for training from scratch (sizes the vocabulary) and for the exported folder"),
    "steps": (int, "optimizer steps (default 100)"), "batch_size": (int, "sequences per micro-step (default 8)"),
    "grad_accum": (int, "micro-steps per optimizer step (default 1)"), "lr": (float, "peak learning rate"),
    "min_lr_ratio": (float, "final lr as a share of the peak (cosine)"), "warmup": (int, "warmup steps"),
    "weight_decay": (float, None), "grad_clip": (float, None), "seq_len": (int, "tokens per sequence (default 512)"),
    "seed": (int, None), "eval_every": (int, "validation loss every N steps"), "eval_batches": (int, None),
    "save_every": (int, "checkpoint every N steps"), "keep_checkpoints": (int, None),
    "device": (str, "auto, cpu or cuda"), "dtype": (str, "parameter dtype (default float32)"),
    "lora_rank": (int, None), "lora_alpha": (float, None),
    "time_limit_minutes": (float, "stop after this long (checkpoint and export included)"),
}
SWITCHES = ("activation_checkpointing", "compile")


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", help="run folder: config.json, log.jsonl, checkpoints/, final/")
    p.add_argument("--settings", help="TOML or YAML file with any of these options")
    for name, (kind, help_) in FLAGS.items():
        p.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, default=None, help=help_)
    for name in SWITCHES:
        p.add_argument("--" + name.replace("_", "-"), dest=name, action="store_true", default=None)
    p.add_argument("--no-autocast", dest="autocast", action="store_false", default=None,
                   help="no bf16 autocast on CUDA")


def run(args: argparse.Namespace) -> int:
    from ..train.trainer import config_from, train

    overrides = {name: getattr(args, name) for name in [*FLAGS, *SWITCHES, "out", "autocast"]}
    result = train(config_from(args.settings, overrides))
    if result.pop("rank", 0) == 0:  # under torchrun, one process reports
        print(json.dumps(result, indent=2))
    return 0
