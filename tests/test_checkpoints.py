"""Bad checkpoints are refused with errors that name the tensor or file."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from codegemma import load
from codegemma.api import ModelLoadError
from codegemma.weights import CheckpointError, load_hf_folder, save_hf_folder
from conftest import TINY_CONFIGS, write_checkpoint


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("good"), TINY_CONFIGS["mqa"])


@pytest.fixture
def ckpt(good, tmp_path):
    folder = tmp_path / "ckpt"
    shutil.copytree(good, folder)
    return folder


def _index(folder):
    return json.loads((folder / "model.safetensors.index.json").read_text())


def _shard_of(folder, name):
    return folder / _index(folder)["weight_map"][name]


NAME = "model.layers.1.mlp.up_proj.weight"


def test_good_checkpoint_loads(good):
    assert load_hf_folder(good).config.num_key_value_heads == 1


def test_tensor_missing_from_its_shard(ckpt):
    shard = _shard_of(ckpt, NAME)
    tensors = load_file(shard)
    del tensors[NAME]
    save_file(tensors, shard)
    with pytest.raises(CheckpointError, match=NAME):
        load_hf_folder(ckpt)


def test_tensor_missing_everywhere(ckpt):
    shard = _shard_of(ckpt, NAME)
    tensors = load_file(shard)
    del tensors[NAME]
    save_file(tensors, shard)
    index = _index(ckpt)
    del index["weight_map"][NAME]
    (ckpt / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match=f"missing tensor {NAME}"):
        load_hf_folder(ckpt)


def test_unexpected_tensor(ckpt):
    shard = _shard_of(ckpt, NAME)
    tensors = load_file(shard)
    tensors["model.layers.0.mlp.extra.weight"] = torch.zeros(2)
    save_file(tensors, shard)
    index = _index(ckpt)
    index["weight_map"]["model.layers.0.mlp.extra.weight"] = shard.name
    (ckpt / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="unexpected tensor model.layers.0.mlp.extra.weight"):
        load_hf_folder(ckpt)


def test_misshaped_tensor(ckpt):
    shard = _shard_of(ckpt, NAME)
    tensors = load_file(shard)
    tensors[NAME] = tensors[NAME][:-1].clone()
    save_file(tensors, shard)
    with pytest.raises(CheckpointError, match=rf"{NAME} has shape \(127, 64\), expected \(128, 64\)"):
        load_hf_folder(ckpt)


def test_truncated_shard(ckpt):
    shard = _shard_of(ckpt, NAME)
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) - 100])
    with pytest.raises(CheckpointError, match=shard.name):
        load_hf_folder(ckpt)


def test_corrupt_header(ckpt):
    shard = _shard_of(ckpt, NAME)
    shard.write_bytes(b"\xff" * 64)
    with pytest.raises(CheckpointError, match=shard.name):
        load_hf_folder(ckpt)


def test_index_names_a_missing_file(ckpt):
    shard = _shard_of(ckpt, NAME)
    shard.unlink()
    with pytest.raises(CheckpointError, match=f"names {shard.name}, which is missing"):
        load_hf_folder(ckpt)


def test_bad_configs(ckpt):
    (ckpt / "config.json").write_text("{oops")
    with pytest.raises(CheckpointError, match="config"):
        load_hf_folder(ckpt)
    (ckpt / "config.json").write_text(json.dumps({**TINY_CONFIGS["mqa"], "model_type": "llama"}))
    with pytest.raises(CheckpointError, match="unsupported model_type 'llama'"):
        load_hf_folder(ckpt)
    (ckpt / "config.json").unlink()
    with pytest.raises(CheckpointError, match="no config.json"):
        load_hf_folder(ckpt)


def test_load_reports_paths_that_are_not_models(tmp_path):
    with pytest.raises(ModelLoadError, match="no such file"):
        load(tmp_path / "nope")
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="expected a Hugging Face folder"):
        load(tmp_path / "weights.bin")


def test_save_and_reload_round_trip(good, tmp_path):
    model = load_hf_folder(good)
    save_hf_folder(model, tmp_path / "out", max_shard_bytes=30_000)
    again = load_hf_folder(tmp_path / "out")
    ids = torch.arange(3, 30)[None]
    with torch.no_grad():
        assert torch.equal(model(ids, last=None), again(ids, last=None))
    assert (tmp_path / "out" / "model.safetensors.index.json").exists()


def _add_head(ckpt, head: torch.Tensor) -> None:
    shard = _shard_of(ckpt, NAME)
    tensors = load_file(shard)
    tensors["lm_head.weight"] = head.contiguous()
    save_file(tensors, shard)
    index = _index(ckpt)
    index["weight_map"]["lm_head.weight"] = shard.name
    (ckpt / "model.safetensors.index.json").write_text(json.dumps(index))


def test_a_tied_head_written_out_loads(ckpt):
    embedding = load_hf_folder(ckpt).model.embed_tokens.weight.detach().clone()
    _add_head(ckpt, embedding)
    assert torch.equal(load_hf_folder(ckpt).model.embed_tokens.weight, embedding)


def test_an_untied_head_is_refused_not_dropped(ckpt):
    embedding = load_hf_folder(ckpt).model.embed_tokens.weight.detach().clone()
    _add_head(ckpt, embedding + 0.01)
    with pytest.raises(CheckpointError, match="differs from the embedding"):
        load_hf_folder(ckpt)
    with pytest.raises(ModelLoadError, match="untied output head"):
        load(ckpt)


def test_a_config_with_untied_embeddings_is_refused(ckpt):
    config = json.loads((ckpt / "config.json").read_text())
    config["tie_word_embeddings"] = False
    (ckpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="tie_word_embeddings is false"):
        load_hf_folder(ckpt)
