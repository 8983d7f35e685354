"""Hugging Face checkpoint folders: config.json plus one or several (indexed) safetensors files, strict."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..config import ConfigError, GemmaConfig
from ..errors import CodeGemmaError
from ..model import GemmaForCausalLM

INDEX = "model.safetensors.index.json"
TIED_HEAD = "lm_head.weight"  # some exporters write the tied head; it must equal the embedding shape


class CheckpointError(CodeGemmaError, ValueError):
    """A checkpoint that cannot be loaded; the message names the file or tensor at fault."""


def shard_map(folder: Path) -> dict[str, Path]:
    """tensor name -> safetensors file, from the index when there is one."""
    index = folder / INDEX
    if index.exists():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{index}: not a valid safetensors index ({exc})") from exc
        out = {name: folder / file for name, file in weight_map.items()}
        for file in sorted(set(out.values())):
            if not file.is_file():
                raise CheckpointError(f"{index} names {file.name}, which is missing")
        return out
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{folder}: no *.safetensors files and no {INDEX}")
    out = {}
    for file in files:
        for name in _open(file).keys():
            out[name] = file
    return out


def _open(file: Path):
    try:
        return safe_open(str(file), framework="pt", device="cpu")
    except Exception as exc:  # safetensors raises its own SafetensorError for a bad header or short file
        raise CheckpointError(f"{file}: corrupt or truncated safetensors file ({exc})") from exc


def iter_tensors(folder: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """Streams (name, tensor) one at a time, file by file."""
    by_file: dict[Path, list[str]] = {}
    for name, file in shard_map(folder).items():
        by_file.setdefault(file, []).append(name)
    for file, names in by_file.items():
        handle = _open(file)
        present = set(handle.keys())
        for name in names:
            if name not in present:
                raise CheckpointError(f"{file}: index says it holds {name}, but it does not")
            try:
                yield name, handle.get_tensor(name)
            except Exception as exc:
                raise CheckpointError(f"{file}: cannot read tensor {name} ({exc})") from exc


def load_hf_folder(folder: str | Path, *, device: str | torch.device = "cpu",
                   dtype: torch.dtype = torch.float32) -> GemmaForCausalLM:
    """Builds the model from a Hugging Face folder, strict: every tensor present, known and of the right shape."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"{folder}: no config.json")
    try:
        config = GemmaConfig.from_json(folder / "config.json")
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from exc
    with torch.device("meta"):
        model = GemmaForCausalLM(config)
    model = model.to(dtype).to_empty(device=device)
    fill_from(model, iter_tensors(folder), source=str(folder))
    return model.eval()


def fill_from(model: GemmaForCausalLM, tensors: Iterator[tuple[str, torch.Tensor]], *, source: str) -> None:
    """Copies named tensors into the model's parameters with name and shape checks (never strict=False).

    The output head is the embedding (tied). A checkpoint that also stores `lm_head.weight` is loaded
    only if that tensor equals the embedding; a different head is refused, never silently dropped.
    """
    params = dict(model.named_parameters())
    seen: set[str] = set()
    head: torch.Tensor | None = None
    for name, tensor in tensors:
        if name == TIED_HEAD and name not in params:
            head = tensor
            continue
        if name not in params:
            raise CheckpointError(f"{source}: unexpected tensor {name}")
        target = params[name]
        if tuple(tensor.shape) != tuple(target.shape):
            raise CheckpointError(f"{source}: tensor {name} has shape {tuple(tensor.shape)}, "
                                  f"expected {tuple(target.shape)}")
        with torch.no_grad():
            target.copy_(tensor)
        seen.add(name)
    missing = sorted(set(params) - seen)
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise CheckpointError(f"{source}: missing tensor {missing[0]}{more}")
    if head is not None:
        embedding = params.get("model.embed_tokens.weight")
        if embedding is None:  # read in place from a GGUF file's blocks: its rows, in the model's dtype
            embed = model.model.embed_tokens
            embedding = embed(torch.arange(embed.num_embeddings, device=model.device))
        _check_tied(head, embedding, source)


def _check_tied(head: torch.Tensor, embedding: torch.Tensor, source: str) -> None:
    """Refuses an lm_head that is not the embedding (compared after the same cast into the model's dtype)."""
    if tuple(head.shape) != tuple(embedding.shape):
        raise CheckpointError(f"{source}: {TIED_HEAD} has shape {tuple(head.shape)}, expected "
                              f"{tuple(embedding.shape)} (tied to the embedding)")
    if not torch.equal(head.to(embedding.device, embedding.dtype), embedding.detach()):
        raise CheckpointError(f"{source}: {TIED_HEAD} differs from the embedding (an untied output head); "
                              "Gemma ties them, and codegemma does not load a separate head")


def save_hf_folder(model: GemmaForCausalLM, folder: str | Path, *, max_shard_bytes: int = 2 << 30,
                   dtype: torch.dtype | None = None) -> None:
    """Writes config.json and safetensors shards (with an index when there are several)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, tensor in model.state_dict().items():
        t = tensor.detach().to("cpu", dtype or tensor.dtype).contiguous()
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = t
        size += nbytes
    config = model.config.to_hf_dict()
    config["torch_dtype"] = str(dtype or model.dtype).removeprefix("torch.")
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    if len(shards) == 1:
        save_file(shards[0], str(folder / "model.safetensors"), metadata={"format": "pt"})
        return
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        file = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(folder / file), metadata={"format": "pt"})
        weight_map.update({name: file for name in shard})
    total = sum(t.numel() * t.element_size() for s in shards for t in s.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / INDEX).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
