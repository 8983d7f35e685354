"""The trainer: golden losses, exact resume, SFT masking, LoRA, 2-process FSDP2, export, bad data."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from codegemma import load
from codegemma.data.shards import write_index, write_shard
from codegemma.train.data import SftData, TrainDataError
from codegemma.train.lora import LoRALinear
from codegemma.train.trainer import TrainConfig, TrainError, config_from, train
from codegemma.weights.convert import hf_to_gguf

GOLDEN = Path(__file__).parent / "golden" / "train_tiny_pretrain.json"


def learnable_shards(folder: Path, vocab: int = 512, docs: int = 24, length: int = 300) -> Path:
    """Arithmetic progressions mod vocab: next tokens are predictable, so a tiny model's loss falls."""
    rng = np.random.default_rng(0)
    out = []
    for _ in range(docs):
        start, step = rng.integers(3, vocab), rng.integers(1, 7)
        out.append([int(3 + (start + i * step) % (vocab - 3)) for i in range(length)])
    folder.mkdir(parents=True, exist_ok=True)
    write_shard(folder, "shard-00000", out, {"stats": {}})
    write_index(folder, vocab, 64)
    return folder


def tiny_config(out: Path, data: Path, **changes) -> TrainConfig:
    base = dict(out=str(out), config="tiny", data=str(data), steps=8, batch_size=4, seq_len=64, lr=3e-3,
                warmup=2, eval_every=4, save_every=4, seed=0)
    return TrainConfig(**{**base, **changes})


def losses(out: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "log.jsonl").read_text().splitlines()]


def test_golden_losses(tmp_path):
    data = learnable_shards(tmp_path / "data")
    train(tiny_config(tmp_path / "run", data))
    got = losses(tmp_path / "run")
    expected = json.loads(GOLDEN.read_text())["losses"]
    assert got == pytest.approx(expected, abs=2e-4)
    assert got[-1] < got[0] - 0.1  # it learns
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert "val_loss" in log[3] and "val_loss" in log[7] and {"lr", "tok_per_s", "tokens"} <= set(log[0])
    assert json.loads((tmp_path / "run" / "config.json").read_text())["lr"] == 3e-3


def test_resume_equals_uninterrupted(tmp_path):
    data = learnable_shards(tmp_path / "data")
    a = tmp_path / "a"
    train(tiny_config(a, data))
    b = tmp_path / "b"
    shutil.copytree(a, b)
    shutil.rmtree(b / "checkpoints" / "step-0000008")  # as if stopped after the checkpoint at step 4
    shutil.rmtree(b / "final")
    (b / "checkpoints" / "latest").write_text("step-0000004")
    (b / "log.jsonl").write_text("".join(line + "\n" for line in (a / "log.jsonl").read_text().splitlines()[:4]))
    result = train(tiny_config(b, data))
    assert result["resumed"] is True
    assert losses(b) == losses(a)  # exactly, on CPU in float32
    state_a = torch.load(a / "checkpoints" / "step-0000008" / "state.pt", weights_only=False)
    state_b = torch.load(b / "checkpoints" / "step-0000008" / "state.pt", weights_only=False)
    assert all(torch.equal(state_a["model"][k], state_b["model"][k]) for k in state_a["model"])


def test_nan_stops_with_the_last_good_checkpoint(tmp_path):
    data = learnable_shards(tmp_path / "data")
    with pytest.raises(TrainError, match=r"became \S+ at step (\d+); the last good checkpoint") as info:
        train(tiny_config(tmp_path / "run", data, lr=1e30, warmup=0, save_every=1, grad_clip=1e30, steps=20))
    import re
    failed = int(re.search(r"step (\d+);", str(info.value)).group(1))
    good = f"step-{failed - 1:07d}"
    assert str(info.value).endswith(good)
    assert (tmp_path / "run" / "checkpoints" / "latest").read_text() == good
    state = torch.load(tmp_path / "run" / "checkpoints" / good / "state.pt", weights_only=False)
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_sft_counts_only_model_turns(tiny_checkpoint, tmp_path):
    from codegemma.tokenizer import load_tokenizer
    tok = load_tokenizer(tiny_checkpoint)
    chats = [{"messages": [{"role": "user", "content": f"question {i}"},
                           {"role": "assistant", "content": f"answer {i}"},
                           {"role": "user", "content": "more"}, {"role": "model", "content": "done"}]}
             for i in range(4)]
    path = tmp_path / "chat.jsonl"
    path.write_text("\n".join(json.dumps(c) for c in chats))
    data = SftData(path, tok, seq_len=48, seed=0)
    ex = data.examples[0]
    targets = ex.tokens[1:]
    counted = tok.decode([int(t) for t, m in zip(targets, ex.mask) if m])
    assert counted == "answer 0<end_of_turn>done<end_of_turn>"
    assert tok.decode([int(t) for t in targets if t != 0]).count("question 0") == 1
    result = train(TrainConfig(out=str(tmp_path / "run"), init=str(tiny_checkpoint), data=str(path), mode="sft",
                               steps=2, batch_size=2, seq_len=48, eval_every=1, save_every=2))
    assert result["steps"] == 2 and (tmp_path / "run" / "final" / "tokenizer.model").exists()


def test_lora_changes_only_adapters_and_merges_to_the_same_outputs(tiny_checkpoint, tmp_path):
    from codegemma.train.trainer import Run
    data = learnable_shards(tmp_path / "data", vocab=1024)
    cfg = TrainConfig(out=str(tmp_path / "run"), init=str(tiny_checkpoint), data=str(data), mode="lora", steps=3,
                      batch_size=2, seq_len=64, lr=1e-2, eval_every=3, save_every=3)
    train(cfg)
    base = load(tiny_checkpoint).model.state_dict()
    state = torch.load(tmp_path / "run" / "checkpoints" / "step-0000003" / "state.pt", weights_only=False)["model"]
    for name, value in state.items():
        original = name.replace(".base.weight", ".weight")
        if "lora_" in name:
            continue
        assert torch.equal(value, base[original]), name  # frozen
    assert any(not torch.all(v == 0) for k, v in state.items() if "lora_b" in k)  # adapters learned
    run = Run(cfg)
    run.model.load_state_dict(state)
    assert isinstance(run.model.model.layers[0].self_attn.q_proj, LoRALinear)
    merged = load(tmp_path / "run" / "final")
    ids = list(range(2, 40))
    with torch.no_grad():
        adapted = run.model(torch.tensor([ids]), last=None)[0]
    assert (merged.logits(ids) - adapted).abs().max().item() < 1e-4
    assert (merged.logits(ids) - load(tiny_checkpoint).logits(ids)).abs().max().item() > 1e-3


def test_export_loads_in_transformers_and_converts_to_gguf(tiny_checkpoint, tmp_path):
    from transformers import GemmaForCausalLM
    data = learnable_shards(tmp_path / "data", vocab=1024)
    train(TrainConfig(out=str(tmp_path / "run"), init=str(tiny_checkpoint), data=str(data), steps=2, batch_size=2,
                      seq_len=64, save_every=2, eval_every=2))
    final = tmp_path / "run" / "final"
    ours = load(final)
    ref = GemmaForCausalLM.from_pretrained(str(final), dtype=torch.float32).eval()
    ids = list(range(2, 30))
    with torch.no_grad():
        assert (ref(torch.tensor([ids])).logits[0] - ours.logits(ids)).abs().max().item() < 1e-5
    gguf = hf_to_gguf(final, tmp_path / "m.gguf")
    assert (load(gguf, dtype="float32").logits(ids) - ours.logits(ids)).abs().max().item() < 1e-5


def run_group(cmd: list[str], env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    """Runs cmd in its own process group and kills the whole group on timeout (torchrun's workers too)."""
    import signal
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"timed out after {timeout}s: {' '.join(cmd)}\n{err[-2000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def test_two_processes_train_like_one(tmp_path):
    data = learnable_shards(tmp_path / "data")
    args = ["train", "--config", "tiny", "--data", str(data), "--steps", "4", "--batch-size", "4", "--seq-len", "64",
            "--lr", "3e-3", "--warmup", "1", "--eval-every", "4", "--save-every", "4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = run_group([sys.executable, "-m", "codegemma.cli", *args, "--out", str(tmp_path / "one")], env)
    assert one.returncode == 0, one.stderr[-2000:]
    two = run_group([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                     "-m", "codegemma.cli", *args, "--out", str(tmp_path / "two")], env)
    assert two.returncode == 0, two.stderr[-3000:]
    assert losses(tmp_path / "two") == pytest.approx(losses(tmp_path / "one"), abs=1e-4)
    from codegemma.weights import load_hf_folder
    a, b = load_hf_folder(tmp_path / "one" / "final"), load_hf_folder(tmp_path / "two" / "final")
    ids = torch.arange(3, 40)[None]
    with torch.no_grad():
        assert (a(ids, last=None) - b(ids, last=None)).abs().max().item() < 1e-3


def test_bad_data_is_refused(tmp_path, tiny_checkpoint):
    empty = tmp_path / "empty"
    empty.mkdir()
    write_shard(empty, "shard-00000", [], {"stats": {}})
    write_index(empty, 512, 64)
    with pytest.raises(TrainDataError, match="not enough"):
        train(tiny_config(tmp_path / "r1", empty))
    big = learnable_shards(tmp_path / "big", vocab=5000)
    with pytest.raises(TrainDataError, match="token id .* is beyond the model's vocabulary \\(1024\\)"):
        train(tiny_config(tmp_path / "r2", big, config=None, init=str(tiny_checkpoint)))  # a model's vocabulary
    write_index(big, 512, 64)  # an index that under-states its ids
    with pytest.raises(TrainDataError, match="beyond the model's vocabulary \\(512\\)"):
        train(tiny_config(tmp_path / "r2b", big))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n{"oops": 1}\n')
    with pytest.raises(TrainDataError, match="bad.jsonl:2"):
        train(TrainConfig(out=str(tmp_path / "r3"), init=str(tiny_checkpoint), data=str(bad), mode="sft", steps=1))
    with pytest.raises(TrainError, match="exactly one of --init and --config"):
        train(TrainConfig(out=str(tmp_path / "r4"), data=str(bad), steps=1))


def test_settings_file(tmp_path):
    (tmp_path / "s.toml").write_text('steps = 7\nlr = 0.001\nconfig = "tiny"\n')
    cfg = config_from(tmp_path / "s.toml", {"lr": 0.002, "out": "x", "data": "d"})
    assert (cfg.steps, cfg.lr, cfg.config) == (7, 0.002, "tiny")
    (tmp_path / "s.yaml").write_text("steps: 3\nbogus: 1\n")
    with pytest.raises(TrainError, match="unknown settings: bogus"):
        config_from(tmp_path / "s.yaml", {})


def test_activation_checkpointing_gives_the_same_losses(tmp_path):
    data = learnable_shards(tmp_path / "data")
    train(tiny_config(tmp_path / "plain", data, steps=3, eval_every=3, save_every=3))
    train(tiny_config(tmp_path / "ckpt", data, steps=3, eval_every=3, save_every=3, activation_checkpointing=True))
    assert losses(tmp_path / "ckpt") == pytest.approx(losses(tmp_path / "plain"), abs=1e-5)


def test_from_scratch_the_vocabulary_fits_the_tokenizer_and_the_data(tmp_path):
    """Shards built with a 702-token tokenizer train from the `tiny` preset (512 tokens) without an error."""
    import sysconfig

    from codegemma.cli import main
    from codegemma.testing import train_sentencepiece

    train_sentencepiece(tmp_path / "tok", vocab_size=702)
    repo = tmp_path / "repos" / "r"
    repo.mkdir(parents=True)
    for name in ("textwrap.py", "bisect.py"):
        shutil.copy(Path(sysconfig.get_paths()["stdlib"]) / name, repo / name)
    shards = tmp_path / "shards"
    assert main(["data", "build", str(tmp_path / "repos"), "--out", str(shards), "--tokenizer", str(tmp_path / "tok"),
                 "--seq-len", "256", "--no-decontaminate"]) == 0
    stream = np.concatenate([np.fromfile(p, dtype=np.uint32) for p in shards.glob("shard-*.bin")])
    assert 512 <= stream.max() < 702  # ids the preset's vocabulary could not hold
    for extra in (["--tokenizer", str(tmp_path / "tok")], []):
        out = tmp_path / f"run{len(extra)}"
        assert main(["train", "--config", "tiny", "--data", str(shards), "--out", str(out), "--steps", "2",
                     "--batch-size", "2", "--seq-len", "64", "--eval-every", "2", "--save-every", "2", *extra]) == 0
        config = json.loads((out / "final" / "config.json").read_text())
        assert config["vocab_size"] == 704  # 702 padded to a multiple of 64
