"""The training loop: continued pretraining, SFT and LoRA, on one process or many (torchrun + FSDP2)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..config import preset
from ..errors import CodeGemmaError
from ..model import GemmaForCausalLM
from .data import PretrainData, SftData, TrainDataError, collate
from .lora import apply_lora, merge_lora

CHECKPOINTS = "checkpoints"


VOCAB_MULTIPLE = 64  # a from-scratch vocabulary is padded to this (GPU-friendly matrix shapes)

class TrainError(CodeGemmaError, RuntimeError):
    """A run that cannot go on (a non-finite loss, a bad resume)."""


@dataclass(frozen=True)
class TrainConfig:
    out: str = ""
    mode: str = "pretrain"  # pretrain | sft | lora
    init: str | None = None  # model to start from (HF folder, .gguf, "default")
    config: str | None = None  # or a preset to start from scratch
    data: str = ""  # token shards (pretrain) or chat JSONL (sft, lora)
    tokenizer: str | None = None  # for SFT from scratch and for the exported folder
    steps: int = 100
    batch_size: int = 8  # sequences per micro-step, across all processes
    grad_accum: int = 1
    lr: float = 3e-4
    min_lr_ratio: float = 0.1
    warmup: int = 10
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    seq_len: int = 512
    seed: int = 0
    eval_every: int = 50
    eval_batches: int = 4
    save_every: int = 50
    keep_checkpoints: int = 2
    device: str = "auto"
    dtype: str = "float32"  # parameter dtype
    autocast: bool = True  # bf16 autocast on CUDA
    activation_checkpointing: bool = False
    compile: bool = False
    time_limit_minutes: float = 0.0  # stop (with a checkpoint and the export) after this long; 0 = none
    lora_rank: int = 8
    lora_alpha: float = 16.0

    def check(self) -> None:
        problems = [(self.mode in ("pretrain", "sft", "lora"), "mode must be pretrain, sft or lora"),
                    (bool(self.out), "--out is required"), (bool(self.data), "--data is required"),
                    ((self.init is None) != (self.config is None), "give exactly one of --init and --config"),
                    (self.steps > 0 and self.batch_size > 0 and self.grad_accum > 0, "steps, batch size and "
                     "grad accum must be positive"), (self.seq_len >= 8, "seq_len must be >= 8"),
                    (self.lr > 0 and self.warmup >= 0, "lr must be > 0 and warmup >= 0")]
        for ok, message in problems:
            if not ok:
                raise TrainError(message)


def lr_lambda(cfg: TrainConfig):
    """Linear warmup, then cosine decay to min_lr_ratio of the peak."""
    def f(step: int) -> float:
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return f


class Run:
    """Everything one training run holds; `train()` drives it."""

    def __init__(self, cfg: TrainConfig) -> None:
        cfg.check()
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.device = self._device()
        if self.world > 1 and not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        if cfg.batch_size % self.world:
            raise TrainError(f"batch size {cfg.batch_size} does not split over {self.world} processes")
        torch.manual_seed(cfg.seed)
        self.model, self.tokenizer_source = self._model()
        self.data = self._data()
        self._wrap()
        params = [p for p in self.model.parameters() if p.requires_grad]
        groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
                  {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
        self.optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(cfg))
        self.step, self.position = 0, 0

    def _device(self) -> torch.device:
        if self.cfg.device != "auto":
            return torch.device(self.cfg.device)
        if torch.cuda.is_available():
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            return torch.device("cuda", local)
        return torch.device("cpu")

    def _model(self) -> tuple[GemmaForCausalLM, str | None]:
        dtype = getattr(torch, self.cfg.dtype)
        if self.cfg.init:
            from ..api import load
            loaded = load(self.cfg.init, device="cpu", dtype=dtype, keep_quantized=False)  # weights will change
            model, source = loaded.model, self.cfg.init
            model.train()
        else:
            config = preset(self.cfg.config)
            vocab = self._scratch_vocab()
            if vocab is not None:
                config = dataclasses.replace(config, vocab_size=vocab)
            model = GemmaForCausalLM(config).to(dtype)
            with torch.no_grad():
                for name, p in model.named_parameters():
                    torch.nn.init.zeros_(p) if "norm" in name else torch.nn.init.normal_(p, 0.0, 0.02)
            source = self.cfg.tokenizer
        if self.cfg.mode == "lora":
            apply_lora(model, self.cfg.lora_rank, self.cfg.lora_alpha)
        return model.to(self.device), source

    def _scratch_vocab(self) -> int | None:
        """From scratch the vocabulary fits the tokenizer and the data: the larger of --tokenizer's size and
        the shards' recorded `vocab_size`, padded to a multiple of VOCAB_MULTIPLE (None: keep the preset's)."""
        sizes = []
        if self.cfg.tokenizer:
            from ..sources import open_tokenizer
            sizes.append(open_tokenizer(self.cfg.tokenizer).vocab_size)
        if Path(self.cfg.data).is_dir():
            from ..data.shards import ShardError, TokenShards
            try:
                sizes.append(int(TokenShards(self.cfg.data).index["vocab_size"]))
            except (ShardError, KeyError, TypeError, ValueError) as exc:
                raise TrainError(f"{self.cfg.data}: cannot read the shards' vocabulary size ({exc})") from exc
        return -(-max(sizes) // VOCAB_MULTIPLE) * VOCAB_MULTIPLE if sizes else None

    def _data(self):
        cfg, vocab = self.cfg, self.model.config.vocab_size
        is_shards = Path(cfg.data).is_dir()
        if cfg.mode == "pretrain" or (cfg.mode == "lora" and is_shards):
            return PretrainData(cfg.data, cfg.seq_len, vocab, cfg.seed)
        from ..sources import open_tokenizer
        if self.tokenizer_source is None:
            raise TrainError("SFT needs a tokenizer: --init a model or give --tokenizer")
        return SftData(cfg.data, open_tokenizer(self.tokenizer_source), cfg.seq_len, cfg.seed)

    def _wrap(self) -> None:
        """Parallelism, checkpointing and compilation are applied from outside the model."""
        if self.cfg.activation_checkpointing:
            from torch.utils.checkpoint import checkpoint
            for block in self.model.model.layers:
                forward = block.forward
                block.forward = lambda *a, _f=forward, **k: checkpoint(_f, *a, use_reentrant=False, **k)
        if self.world > 1:
            from torch.distributed.device_mesh import init_device_mesh
            from torch.distributed.fsdp import fully_shard
            mesh = init_device_mesh(self.device.type, (self.world,))
            for block in self.model.model.layers:
                fully_shard(block, mesh=mesh)
            fully_shard(self.model, mesh=mesh)
        self.forward = torch.compile(self.model) if self.cfg.compile else self.model

    def loss(self, examples) -> torch.Tensor:
        inputs, targets, mask = collate(examples, self.device)
        use_amp = self.cfg.autocast and self.device.type == "cuda"
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_amp):
            logits = self.forward(inputs, last=None)
        ce = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none")
        return (ce * mask.flatten()).sum() / mask.sum().clamp(min=1)

    def micro_batch(self) -> list:
        local = self.cfg.batch_size // self.world
        start = self.position + self.rank * local
        batch = [self.data.train_example(start + i) for i in range(local)]
        self.position += self.cfg.batch_size
        return batch

    def validate(self) -> float:
        self.model.eval()
        losses = []
        with torch.no_grad():
            examples = list(self.data.val_examples(self.cfg.eval_batches * self.cfg.batch_size))
            for i in range(0, len(examples), self.cfg.batch_size):
                losses.append(self.loss(examples[i:i + self.cfg.batch_size]).item())
        self.model.train()
        return sum(losses) / max(1, len(losses))

    def parameters_finite(self) -> bool:
        ok = torch.tensor([all(bool(torch.isfinite(getattr(p, "to_local", lambda: p)()).all())
                               for p in self.model.parameters())], dtype=torch.int32, device=self.device)
        if self.world > 1:
            torch.distributed.all_reduce(ok, op=torch.distributed.ReduceOp.MIN)
        return bool(ok.item())

    # Checkpoints: a folder per step, written to a temporary name and renamed, "latest" updated last.
    def _full_state(self) -> tuple[dict, dict]:
        if self.world > 1:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict
            return get_state_dict(self.model, self.optimizer,
                                  options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return self.model.state_dict(), self.optimizer.state_dict()

    def save(self) -> Path:
        model_state, optim_state = self._full_state()
        folder = self.out / CHECKPOINTS / f"step-{self.step:07d}"
        if self.rank == 0:
            tmp = folder.with_name(folder.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            torch.save({"model": model_state, "optimizer": optim_state, "scheduler": self.scheduler.state_dict(),
                        "step": self.step, "position": self.position, "rng": torch.get_rng_state(),
                        "config": asdict(self.cfg)}, tmp / "state.pt")
            shutil.rmtree(folder, ignore_errors=True)
            tmp.rename(folder)
            (self.out / CHECKPOINTS / "latest").write_text(folder.name)
            kept = sorted(p for p in (self.out / CHECKPOINTS).glob("step-*") if not p.name.endswith(".tmp"))
            for old in kept[:-self.cfg.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        if self.world > 1:
            torch.distributed.barrier()
        return folder

    def resume(self) -> bool:
        latest = self.out / CHECKPOINTS / "latest"
        if not latest.is_file():
            return False
        state = torch.load(self.out / CHECKPOINTS / latest.read_text().strip() / "state.pt", weights_only=False)
        if self.world > 1:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict
            set_state_dict(self.model, self.optimizer, model_state_dict=state["model"],
                           optim_state_dict=state["optimizer"], options=StateDictOptions(full_state_dict=True))
        else:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.position = state["step"], state["position"]
        torch.set_rng_state(state["rng"])
        return True


def _good(last_good: Path | None) -> str:
    return f"; the last good checkpoint is {last_good}" if last_good else "; no checkpoint was written"


def _log(out: Path, row: dict) -> None:
    with open(out / "log.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def _progress(run: Run, loss: float, tok_s: float, started: float) -> None:
    done = run.step / run.cfg.steps
    elapsed = time.perf_counter() - started
    eta = elapsed / max(1e-9, done) * (1 - done) if done else 0
    if run.cfg.time_limit_minutes:
        eta = min(eta, max(0.0, 60 * run.cfg.time_limit_minutes - elapsed))
    bar = "#" * int(done * 20)
    line = (f"\r[{bar:<20}] step {run.step}/{run.cfg.steps} loss {loss:.4f} lr {run.scheduler.get_last_lr()[0]:.2e} "
            f"{tok_s:,.0f} tok/s ETA {int(eta // 60)}:{int(eta % 60):02d}")
    sys.stderr.write(line if sys.stderr.isatty() else line[1:] + "\n")
    sys.stderr.flush()


def train(cfg: TrainConfig) -> dict:
    """Runs (or resumes) training; returns the final metrics. Writes DIR/config.json, log.jsonl, checkpoints/
    and, at the end, DIR/final (a Hugging Face folder)."""
    run = Run(cfg)
    run.out.mkdir(parents=True, exist_ok=True)
    resumed = run.resume()
    if run.rank == 0:
        (run.out / "config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n", encoding="utf-8")
    started, last_good = time.perf_counter(), None
    tokens_per_step = cfg.batch_size * cfg.grad_accum * cfg.seq_len
    loss_value = float("nan")
    while run.step < cfg.steps:
        t = time.perf_counter()
        total = 0.0
        for _ in range(cfg.grad_accum):
            loss = run.loss(run.micro_batch()) / cfg.grad_accum
            loss.backward()
            total += loss.detach()
        loss_value = float(total)
        if run.world > 1:
            reduced = torch.tensor([loss_value], device=run.device)
            torch.distributed.all_reduce(reduced)
            loss_value = reduced.item() / run.world
        if not math.isfinite(loss_value):
            raise TrainError(f"the loss became {loss_value} at step {run.step + 1}{_good(last_good)}")
        norm = torch.nn.utils.clip_grad_norm_([p for p in run.model.parameters() if p.requires_grad], cfg.grad_clip)
        if not math.isfinite(float(norm)):
            raise TrainError(f"the gradient norm became {float(norm)} at step {run.step + 1}{_good(last_good)}")
        run.optimizer.step()
        run.scheduler.step()
        run.optimizer.zero_grad(set_to_none=True)
        run.step += 1
        tok_s = tokens_per_step / (time.perf_counter() - t)
        row = {"step": run.step, "loss": loss_value, "lr": run.scheduler.get_last_lr()[0], "tok_per_s": tok_s,
               "tokens": run.step * tokens_per_step, "elapsed": time.perf_counter() - started}
        out_of_time = bool(cfg.time_limit_minutes) and time.perf_counter() - started > 60 * cfg.time_limit_minutes
        if run.step % cfg.eval_every == 0 or run.step == cfg.steps or out_of_time:
            row["val_loss"] = run.validate()
        if run.rank == 0:
            _log(run.out, row)
            _progress(run, loss_value, tok_s, started)
        if out_of_time or run.step % cfg.save_every == 0 or run.step == cfg.steps:
            if not run.parameters_finite():  # never write a checkpoint that cannot be resumed from
                raise TrainError(f"the parameters became non-finite at step {run.step}{_good(last_good)}")
            last_good = run.save()
        if out_of_time:
            break
    if run.rank == 0:
        sys.stderr.write("\n")
    final = export(run)
    if run.world > 1:
        torch.distributed.barrier()
    return {"steps": run.step, "loss": loss_value, "resumed": resumed, "final": str(final), "rank": run.rank}


def export(run: Run) -> Path:
    """DIR/final: a Hugging Face folder that codegemma.load and transformers load (LoRA merged)."""
    from ..weights import save_hf_folder
    model_state, _ = run._full_state()
    folder = run.out / "final"
    if run.rank != 0:
        return folder
    plain = GemmaForCausalLM(run.model.config)
    if run.cfg.mode == "lora":
        apply_lora(plain, run.cfg.lora_rank, run.cfg.lora_alpha)
        plain.load_state_dict(model_state)
        merge_lora(plain)
    else:
        plain.load_state_dict(model_state)
    save_hf_folder(plain.to(torch.float32), folder)
    _copy_tokenizer(run.tokenizer_source, folder)
    return folder


def _copy_tokenizer(source: str | None, folder: Path) -> None:
    if not source:
        return
    from ..sources import resolve
    src = resolve(source)
    if src.kind == "gguf":
        from ..weights.convert import write_sentencepiece
        from ..weights.gguf import metadata, open_gguf
        write_sentencepiece(metadata(open_gguf(src.path)), folder / "tokenizer.model")
        return
    src = src.path
    for name in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"):
        if (src / name).is_file():
            shutil.copy(src / name, folder / name)


def config_from(file: str | Path | None, overrides: dict) -> TrainConfig:
    """Defaults < TOML/YAML file < command-line flags."""
    values: dict = {}
    if file:
        path = Path(file)
        try:
            text = path.read_text(encoding="utf-8")
            if path.suffix == ".toml":
                import tomllib
                values = tomllib.loads(text)
            else:
                import yaml
                values = yaml.safe_load(text) or {}
        except (OSError, ValueError, ImportError) as exc:
            raise TrainError(f"cannot read settings {path}: {exc}") from exc
        if not isinstance(values, dict):
            raise TrainError(f"{path}: settings must be a table/mapping")
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise TrainError(f"unknown settings: {', '.join(unknown)}")
    return TrainConfig(**values)


__all__ = ["TrainConfig", "TrainDataError", "TrainError", "config_from", "train"]
