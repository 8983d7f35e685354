"""Our model against transformers' GemmaForCausalLM, loaded through our loader from real sharded files."""

from __future__ import annotations

import json

import pytest
import torch

from codegemma import load
from codegemma.config import GemmaConfig
from codegemma.generate import GenerationSettings, decode_steps
from codegemma.weights import load_hf_folder
from conftest import TINY_CONFIGS, hf_reference_model, write_checkpoint


@pytest.fixture(scope="module", params=sorted(TINY_CONFIGS))
def pair(request, tmp_path_factory):
    folder = write_checkpoint(tmp_path_factory.mktemp(request.param), TINY_CONFIGS[request.param])
    return hf_reference_model(TINY_CONFIGS[request.param]), load_hf_folder(folder), folder


def test_checkpoint_is_really_sharded_and_says_gelu(pair):
    _, _, folder = pair
    assert len(list(folder.glob("model-*.safetensors"))) > 1
    assert (folder / "model.safetensors.index.json").exists()
    assert json.loads((folder / "config.json").read_text())["hidden_act"] == "gelu"


def test_logits_match_transformers(pair):
    ref, ours, _ = pair
    ids = torch.randint(0, ref.config.vocab_size, (2, 33), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = ref(ids).logits
        got = ours(ids, last=None)
    assert got.dtype == torch.float32 and got.shape == expected.shape
    assert (got - expected).abs().max().item() <= 1e-4


def test_greedy_generation_matches_transformers(pair):
    ref, ours, _ = pair
    prompt = [2, 45, 300, 17, 900, 5]
    with torch.no_grad():
        expected = ref.generate(torch.tensor([prompt]), max_new_tokens=24, do_sample=False, min_new_tokens=24,
                                eos_token_id=None, pad_token_id=0)[0, len(prompt):].tolist()
    got = [s.tokens[0] for s in decode_steps(ours, [prompt], GenerationSettings(max_tokens=24))]
    assert got == expected


def test_cached_decoding_equals_full_recompute(pair):
    _, ours, _ = pair
    ids = torch.randint(3, 1000, (1, 40), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = ours(ids, last=None)[0]
        ours.setup_cache(1, 40)
        parts = [ours(ids[:, :25], start=0, last=None)[0]]
        for t in range(25, 40):
            parts.append(ours(ids[:, t:t + 1], start=t)[0])
        ours.clear_cache()
    assert (torch.cat(parts) - full).abs().max().item() <= 1e-4


def test_prefill_logits_only_for_needed_positions(pair):
    _, ours, _ = pair
    ids = torch.randint(3, 1000, (1, 12))
    with torch.no_grad():
        assert ours(ids).shape == (1, 1, ours.config.vocab_size)
        assert ours(ids, last=3).shape == (1, 3, ours.config.vocab_size)
        assert ours(ids, last=0) is None


def test_tanh_gelu_regardless_of_hidden_act(tiny_checkpoint):
    """A config saying hidden_act="gelu" still gets tanh-GELU, which differs from exact GELU at O(1) inputs."""
    model = load(tiny_checkpoint).model
    assert model.config.hidden_activation == "gelu"
    mlp = model.model.layers[0].mlp
    x = torch.randn(4, model.config.hidden_size, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        for p in mlp.parameters():
            p.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(4))
        got = mlp(x)
        tanh = mlp.down_proj(torch.nn.functional.gelu(mlp.gate_proj(x), approximate="tanh") * mlp.up_proj(x))
        exact = mlp.down_proj(torch.nn.functional.gelu(mlp.gate_proj(x)) * mlp.up_proj(x))
    assert torch.equal(got, tanh)
    assert (got - exact).abs().max().item() > 1e-3


def test_head_dim_comes_from_config():
    cfg = GemmaConfig.from_hf_dict(TINY_CONFIGS["odd-head-dim"])
    assert cfg.head_dim == 32 and cfg.hidden_size // cfg.num_attention_heads == 12


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_close_to_float32(tiny_checkpoint, dtype):
    m32 = load(tiny_checkpoint, dtype="float32")
    m16 = load(tiny_checkpoint, dtype=dtype)
    assert m16.model.dtype == dtype
    ids = list(range(2, 40))
    a, b = m32.logits(ids), m16.logits(ids)
    assert b.dtype == torch.float32
    assert (a - b).abs().max().item() < 0.15 * a.abs().max().item()
    assert (a.argmax(-1) == b.argmax(-1)).float().mean().item() > 0.8


def test_embedding_scale_is_cast_to_activation_dtype():
    """sqrt(3072) = 55.4256 becomes 55.5 in bfloat16: the model scales its embeddings by the rounded factor."""
    from codegemma.model import GemmaForCausalLM

    cfg = GemmaConfig(hidden_size=3072, intermediate_size=8, num_hidden_layers=1, num_attention_heads=1,
                      num_key_value_heads=1, head_dim=4, vocab_size=16)
    torch.manual_seed(0)
    model = GemmaForCausalLM(cfg).to(torch.bfloat16).eval()
    seen = []
    model.model.layers[0].register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    ids = torch.arange(16)[None]
    with torch.no_grad():
        model(ids)
        embedded = model.model.embed_tokens(ids)
    assert torch.equal(seen[0], embedded * torch.tensor(55.5, dtype=torch.bfloat16))
    assert not torch.equal(seen[0], (embedded.float() * cfg.hidden_size ** 0.5).to(torch.bfloat16))


def test_rope_tables_hold_what_is_used_and_never_depend_on_history():
    """A table grown by requests of 3, 300 and 1000 positions equals one made for 1000 at once, bit for bit,
    and holds whole chunks up to the longest request only."""
    from codegemma.model import ROPE_CHUNK, GemmaForCausalLM

    config = GemmaConfig(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=256)
    grown, once = GemmaForCausalLM(config), GemmaForCausalLM(config)
    key = grown._rope_key(0)
    for n in (3, 300, 1000):
        cos, sin = grown._rope_table(key, torch.bfloat16, n)
    want_cos, want_sin = once._rope_table(key, torch.bfloat16, 1000)
    assert torch.equal(cos[:1000], want_cos[:1000]) and torch.equal(sin[:1000], want_sin[:1000])
    assert cos.shape[0] == want_cos.shape[0] == -(-1000 // ROPE_CHUNK) * ROPE_CHUNK
