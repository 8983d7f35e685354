"""GGUF: our dequantization against the gguf package, conversion through llama.cpp, Gemma 2/3, bad files."""

from __future__ import annotations

import ctypes
import dataclasses
import shutil
import struct

import numpy as np
import pytest
import torch

from codegemma import load
from codegemma.api import ModelLoadError
from codegemma.model import Rows
from codegemma.weights.convert import gguf_to_hf, hf_to_gguf
from codegemma.weights.gguf import GGUFError, dequantize, load_gguf, open_gguf
from conftest import write_checkpoint

llama_cpp = pytest.importorskip("llama_cpp")

# K-quants need rows that are multiples of 256 values.
QUANT_CONFIG = dict(vocab_size=1024, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=1, head_dim=64, max_position_embeddings=256)
FTYPES = {"Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9, "Q2_K": 10, "Q3_K_M": 12, "Q4_K_M": 15,
          "Q5_K_M": 17, "Q6_K": 18, "F16": 1, "BF16": 32}


def quantize_with_llama_cpp(src, dst, ftype: int) -> None:
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = 2
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    assert rc == 0, f"llama_model_quantize failed ({rc})"


def llama_logits(path, ids) -> np.ndarray:
    ref = llama_cpp.Llama(model_path=str(path), n_ctx=256, n_threads=2, logits_all=True, verbose=False)
    ref.eval(ids)
    return np.array(ref.scores[:len(ids)])


@pytest.fixture(scope="module")
def f32_gguf(tmp_path_factory, tok_folder):
    folder = write_checkpoint(tmp_path_factory.mktemp("hf"), QUANT_CONFIG, tok_folder)
    return folder, hf_to_gguf(folder, folder.parent / "model-f32.gguf")


@pytest.fixture(scope="module")
def quantized(f32_gguf):
    _, f32 = f32_gguf
    out = {}
    for name, ftype in FTYPES.items():
        dst = f32.parent / f"model-{name}.gguf"
        quantize_with_llama_cpp(f32, dst, ftype)
        out[name] = dst
    return out


def test_dequantization_equals_the_gguf_package(quantized):
    from gguf.quants import dequantize as reference

    covered = set()
    for path in quantized.values():
        for t in open_gguf(path).tensors:
            ours = dequantize(t)
            ref = torch.from_numpy(np.array(reference(t.data, t.tensor_type), dtype=np.float32)).reshape(ours.shape)
            assert torch.equal(ours, ref), f"{path.name} {t.name} {t.tensor_type.name}"
            covered.add(t.tensor_type.name)
    assert {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "F16", "BF16"} <= covered


@pytest.mark.parametrize("backend", ["cpp", "torch"])
def test_kernels_use_exactly_the_gguf_weights(quantized, backend, monkeypatch):
    """Every 2-D tensor of every format: the kernels' rows are the gguf package's values bit for bit, the
    products are those of the exact weights (float64 reference), and a row's result is the same alone
    or among others, in the compiled op and in the PyTorch fallback."""
    from gguf.quants import dequantize as reference

    from codegemma import kernels
    from codegemma.kernels import GGUFMatrix, dequant_matrix, dequant_rows, qgemv

    if backend == "cpp" and kernels.backend() != "cpp":
        pytest.skip("the C++ kernels did not build here (no compiler?)")
    monkeypatch.setattr(kernels, "_backend", backend)
    torch.manual_seed(0)
    covered = set()
    for path in quantized.values():
        for t in open_gguf(path).tensors:
            if len(t.shape) != 2 or not kernels.supported(t.tensor_type.name, int(t.shape[0])):
                continue
            rows, cols = int(t.shape[1]), int(t.shape[0])
            raw = torch.from_numpy(np.asarray(t.data).view(np.uint8).reshape(-1))
            m = GGUFMatrix(raw, t.tensor_type.name, rows, cols)
            exact = torch.from_numpy(np.array(reference(t.data, t.tensor_type), dtype=np.float32)).reshape(rows, cols)
            assert torch.equal(dequant_rows(m), exact), f"{path.name} {t.name}"
            ids = torch.tensor([rows - 1, 0, 3])
            assert torch.equal(dequant_rows(m, ids, torch.bfloat16), exact[ids].bfloat16())
            assert torch.equal(dequant_matrix(m, torch.bfloat16), exact.bfloat16())  # (the reused buffer)
            for dtype in (torch.float32, torch.bfloat16):
                x = torch.randn(11, cols).to(dtype)
                got = qgemv(x, [m], f32_out=True)[0]
                want = x.double() @ exact.double().T
                assert (got.double() - want).abs().max() < 1e-5 * want.abs().max(), f"{path.name} {t.name} {dtype}"
                alone = torch.cat([qgemv(x[i:i + 1], [m], f32_out=True)[0] for i in range(11)])
                assert torch.equal(got, alone), f"{path.name} {t.name}: a row's result depends on its company"
            covered.add(t.tensor_type.name)
    assert {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "F16", "BF16"} <= covered


def test_keep_quantized_is_for_gguf_files(f32_gguf):
    folder, _ = f32_gguf
    with pytest.raises(ModelLoadError, match="GGUF files on CPU"):
        load(folder, keep_quantized=True)


def test_bad_blocks_are_refused():
    from codegemma.kernels import GGUFMatrix, qgemv

    with pytest.raises(ValueError, match="cannot hold"):
        GGUFMatrix(torch.zeros(33, dtype=torch.uint8), "Q8_0", 1, 32)
    with pytest.raises(ValueError, match="no kernel"):
        GGUFMatrix(torch.zeros(34, dtype=torch.uint8), "IQ2_XXS", 1, 32)
    m = GGUFMatrix(torch.zeros(34, dtype=torch.uint8), "Q8_0", 1, 32)
    with pytest.raises(RuntimeError):
        qgemv(torch.zeros(1, 64), [m])  # x has the wrong width


@pytest.mark.parametrize("kind", ["Q4_K_M", "Q8_0"])
def test_quantized_loading_tracks_the_float32_model(quantized, kind):
    """The default GGUF load (blocks read in place, bfloat16 activations) against every weight dequantized
    to float32; with float32 activations the kernels give the dense float32 model's logits."""
    path = quantized[kind]
    exact = load(path, dtype="float32", keep_quantized=False)
    fast = load(path)
    same = load(path, dtype="float32")
    assert fast.model.dtype == torch.bfloat16 and same.model.dtype == torch.float32
    kinds = {type(m).__name__ for m in fast.model.modules()}
    assert {"GGUFLinear", "GGUFEmbedding"} <= kinds and "Linear" not in kinds
    dense_values = sum(p.numel() for p in fast.model.parameters())
    assert dense_values < 0.01 * exact.model.model.embed_tokens.weight.numel()  # only the norms: no copies
    ids = exact.tokenizer.encode("def add(a, b):\n    return a + b\n\nprint(add(2, 3))\n")
    want = exact.logits(ids).numpy()

    def one_by_one(cg):
        model = cg.model
        model.setup_cache(1, len(ids))
        with torch.inference_mode():
            out = [model(torch.tensor([[t]]), start=i)[0, -1].float().numpy() for i, t in enumerate(ids)]
        model.clear_cache()
        return np.array(out)

    scale = np.abs(want).mean()
    assert np.abs(same.logits(ids).numpy() - want).max() < 1e-4 * np.abs(want).max()  # prefill, dequantized GEMMs
    assert np.abs(one_by_one(same) - want).max() < 1e-4 * np.abs(want).max()  # decoding, the kernels
    assert np.abs(one_by_one(fast) - want).mean() < 0.05 * scale
    assert exact.generate("def f(x):", max_tokens=12) == same.generate("def f(x):", max_tokens=12)
    layer = next(m for m in fast.model.modules() if type(m).__name__ == "GGUFLinear")
    with pytest.raises(RuntimeError, match="inference"):
        layer(torch.randn(2, layer.in_features, requires_grad=True))



def test_hf_to_gguf_runs_in_llama_cpp_with_matching_logits(f32_gguf):
    folder, gguf_path = f32_gguf
    ours = load(folder)
    ids = ours.tokenizer.encode("def add(a, b):\n    return a + b\n\nprint(add(2, 3))\n")
    expected = ours.logits(ids).numpy()
    got = llama_logits(gguf_path, ids)
    assert np.abs(got - expected).max() < 1e-2 * np.abs(expected).max()
    assert (got.argmax(-1) == expected.argmax(-1)).all()


def test_gguf_path_equals_safetensors_path(f32_gguf):
    folder, gguf_path = f32_gguf
    a, b = load(folder), load(gguf_path, dtype="float32")
    ids = a.tokenizer.encode("import os\nclass A:\n    pass\n")
    assert b.tokenizer.encode("import os\nclass A:\n    pass\n") == ids
    assert (a.logits(ids) - b.logits(ids)).abs().max().item() < 1e-5
    assert b.fim_native and b.tokenizer.token_id("<|fim_middle|>") == 68


def test_gguf_to_hf_round_trip(f32_gguf, tmp_path):
    folder, gguf_path = f32_gguf
    back = gguf_to_hf(gguf_path, tmp_path / "back")
    a, b = load(folder), load(back)
    ids = a.tokenizer.encode("for i in range(10):\n\tprint(i)\n")
    assert b.tokenizer.encode("for i in range(10):\n\tprint(i)\n") == ids
    assert (a.logits(ids) - b.logits(ids)).abs().max().item() < 1e-5


def test_quantized_model_tracks_llama_cpp(quantized):
    """On a Q8_0 file our logits and llama.cpp's differ only by llama.cpp's activation rounding."""
    ours = load(quantized["Q8_0"])
    ids = ours.tokenizer.encode("def f(x):\n    return x * 2\n")
    expected, got = ours.logits(ids).numpy(), llama_logits(quantized["Q8_0"], ids)
    assert np.abs(got - expected).mean() < 0.05 * np.abs(expected).mean()


@pytest.mark.parametrize("arch", ["gemma2", "gemma3", "gemma3-scaled"])
def test_gemma2_and_gemma3_match_transformers_and_llama_cpp(arch, tmp_path, tok_folder):
    import json

    import transformers

    common = dict(vocab_size=1024, hidden_size=64, intermediate_size=128, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=32, max_position_embeddings=256, sliding_window=8,
                  query_pre_attn_scalar=32)
    if arch == "gemma2":
        cfg = transformers.Gemma2Config(num_hidden_layers=4, **common)
        ref = transformers.Gemma2ForCausalLM(cfg)
    else:  # the 4B-and-up Gemma 3 models scale global-layer positions linearly (factor 8)
        scaling = {"rope_scaling": {"rope_type": "linear", "factor": 8.0}} if arch == "gemma3-scaled" else {}
        cfg = transformers.Gemma3TextConfig(num_hidden_layers=6, rope_theta=1_000_000.0, **common, **scaling)
        ref = transformers.Gemma3ForCausalLM(cfg)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            (p.normal_(0, 0.5) if "norm" in name else p.normal_(0, 0.1))
    ref.eval().save_pretrained(str(tmp_path / "hf"))
    shutil.copy(tok_folder / "tokenizer.model", tmp_path / "hf" / "tokenizer.model")
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["sliding_window"] == 8
    ours = load(tmp_path / "hf")
    ids = list(range(2, 42))  # longer than the window, so sliding layers matter
    with torch.no_grad():
        expected = ref(torch.tensor([ids])).logits[0]
    assert (ours.logits(ids) - expected).abs().max().item() < 1e-4
    model = ours.model  # the KV cache respects the window: decoding past it equals full recompute
    with torch.no_grad():
        model.setup_cache(1, len(ids))
        steps = [model(torch.tensor([ids[:4]]), start=0, last=None)[0]]
        steps += [model(torch.tensor([[t]]), start=i)[0] for i, t in enumerate(ids[4:], 4)]
        model.clear_cache()
    assert (torch.cat(steps) - expected).abs().max().item() < 1e-4
    gguf_path = hf_to_gguf(tmp_path / "hf", tmp_path / "m.gguf")
    again = load(gguf_path, dtype="float32")
    if arch == "gemma3-scaled":
        assert ours.config.rope_scaling_factor == again.config.rope_scaling_factor == 8.0
    assert (again.logits(ids) - expected).abs().max().item() < 1e-4
    got = llama_logits(gguf_path, ids)
    assert np.abs(got - expected.numpy()).max() < 2e-2 * np.abs(expected.numpy()).max()


def test_truncated_gguf(f32_gguf, tmp_path):
    _, good = f32_gguf
    bad = tmp_path / "cut.gguf"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(GGUFError, match="cut.gguf"):
        load_gguf(bad)
    with pytest.raises(ModelLoadError, match="cut.gguf"):
        load(bad)


def test_corrupt_gguf(tmp_path):
    bad = tmp_path / "junk.gguf"
    bad.write_bytes(b"GGUF" + struct.pack("<I", 3) + b"\xff" * 64)
    with pytest.raises(GGUFError, match="junk.gguf"):
        load_gguf(bad)
    bad.write_bytes(b"not a gguf at all")
    with pytest.raises(GGUFError, match="not a readable GGUF"):
        load_gguf(bad)


def test_unsupported_architecture(tmp_path):
    import gguf

    w = gguf.GGUFWriter(str(tmp_path / "llama.gguf"), "llama")
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(GGUFError, match="unsupported architecture 'llama'"):
        load_gguf(tmp_path / "llama.gguf")


@pytest.mark.parametrize("which", ["default", "Q4_K_M", "BF16"])
def test_our_reader_agrees_with_the_gguf_package(which, quantized):
    """Metadata, tensor names, shapes, types and bytes exactly as the gguf package's GGUFReader gives them."""
    from gguf import GGUFReader

    from codegemma.default_model import default_model_path
    from codegemma.weights.gguf import open_gguf

    path = default_model_path() if which == "default" else quantized[which]
    ours, ref = open_gguf(path), GGUFReader(str(path))
    expected = {k: f.contents() for k, f in ref.fields.items() if not k.startswith("GGUF.")}
    assert ours.metadata.keys() == expected.keys()
    for key, value in expected.items():  # (arrays are compact sequences: numbers in an array, strings in the map)
        got = ours.metadata[key]
        assert (list(got) if isinstance(value, list) else got) == value, key
    assert [t.name for t in ours.tensors] == [t.name for t in ref.tensors]
    for a, b in zip(ours.tensors, ref.tensors):
        assert a.tensor_type == b.tensor_type and a.shape == tuple(int(d) for d in b.shape)
        assert a.data.dtype == b.data.dtype and a.data.shape == b.data.shape and np.array_equal(a.data, b.data)


def test_truncated_files_are_refused(tmp_path, quantized):
    data = quantized["Q8_0"].read_bytes()
    for cut in (3, 40, len(data) // 3, len(data) - 10):
        bad = tmp_path / f"cut{cut}.gguf"
        bad.write_bytes(data[:cut])
        with pytest.raises(GGUFError, match="not a readable GGUF file"):
            load_gguf(bad)


def test_fused_single_query_ops_match_a_float64_reference():
    """attend1 (GQA, a sliding window's first key, Gemma 2's soft-cap, bfloat16 keys), rms_norm and rope
    against float64 computations of the same formulas."""
    from codegemma import kernels

    if kernels.backend() != "cpp":
        pytest.skip("the C++ kernels did not build here")
    ops = torch.ops.codegemma
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 8, 1, 64, generator=g) * 3
    k, v = torch.randn(2, 2, 50, 64, generator=g), torch.randn(2, 2, 50, 64, generator=g)
    for first, cap, dtype in ((0, 0.0, torch.float32), (17, 0.0, torch.float32), (5, 3.0, torch.float32),
                              (9, 0.0, torch.bfloat16)):
        kd, vd = k.to(dtype).double(), v.to(dtype).double()
        scores = torch.einsum("bhd,bhsd->bhs", q[:, :, 0].double(), kd.repeat_interleave(4, dim=1)) * 0.125
        if cap:
            scores = cap * torch.tanh(scores / cap)
        probs = scores[..., first:].softmax(-1)
        want = torch.einsum("bhs,bhsd->bhd", probs, vd.repeat_interleave(4, dim=1)[:, :, first:])
        got = ops.attend1(q.to(dtype), k.to(dtype), v.to(dtype), 0.125, first, cap)
        tol = 2e-2 if dtype == torch.bfloat16 else 1e-5
        assert got.dtype == dtype and (got[:, :, 0].double() - want).abs().max() < tol, (first, cap, dtype)
    x, w = torch.randn(3, 5, 64, generator=g), torch.randn(64, generator=g)
    want = x.double() * torch.rsqrt(x.double().pow(2).mean(-1, keepdim=True) + 1e-6) * (1 + w.double())
    assert (ops.rms_norm(x, (1 + w).contiguous(), 1e-6).double() - want).abs().max() < 1e-5
    cos, sin = torch.randn(1, 1, 5, 64, generator=g), torch.randn(1, 1, 5, 64, generator=g)
    xr = torch.randn(1, 3, 5, 64, generator=g)
    rotated = torch.cat((-xr[..., 32:], xr[..., :32]), dim=-1)
    assert (ops.rope(xr, cos, sin).double() - (xr.double() * cos + rotated.double() * sin)).abs().max() < 1e-5


def _decoded_with_and_without_block_steps(cg, ids: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Logits of plain decoding (forward, one token at a time, over a sliding window where the model has
    one) and of a continuous batch (decode_rows: rows of two sequences at different slots), computed with
    each block as one op (quantized.BlockStep) and with the separate ops."""
    model = cg.model

    def run() -> list[torch.Tensor]:
        out = []
        with torch.inference_mode():
            model.setup_cache(1, len(ids) + 1)
            out.append(model(torch.tensor([ids[:8]]), start=0)[:, -1])
            out += [model(torch.tensor([[t]]), start=8 + i)[:, -1] for i, t in enumerate(ids[8:])]
            model.clear_cache()
            cache = model.make_cache(2, len(ids) + 2)
            model(torch.tensor([ids[:20]]), cache=cache, row=0, last=0)
            model(torch.tensor([ids[:9]]), cache=cache, row=1, last=0)
            out.append(model.decode_rows([5, 6, 7], Rows((0, 1, 0), (20, 9, 21)), cache))
        return out

    steps = [block.step for block in model.model.layers]
    assert all(steps)
    fused = run()
    try:
        for block in model.model.layers:
            block.step = None
        separate = run()
    finally:
        for block, step in zip(model.model.layers, steps):
            block.step = step
    return list(zip(fused, separate))


@pytest.mark.parametrize("kind,dtype", [("Q4_K_M", "bfloat16"), ("Q8_0", "float32"), ("Q5_K_M", "bfloat16")])
def test_one_op_decoding_blocks_give_the_separate_ops_bits(quantized, kind, dtype):
    from codegemma import kernels

    if kernels.backend() != "cpp":
        pytest.skip("the C++ kernels did not build here")
    cg = load(quantized[kind], dtype=dtype)
    ids = cg.tokenizer.encode("def add(a, b):\n    return a + b\n\nprint(add(2, 3))\n" * 2)
    for fused, separate in _decoded_with_and_without_block_steps(cg, ids):
        assert torch.equal(fused, separate)
    cache = cg.model.make_cache(1, 4)
    with torch.inference_mode(), pytest.raises(ValueError, match="KV cache holds 4 tokens; slot 4"):
        cg.model.decode_rows([5], Rows((0,), (4,)), cache)  # past the cache: the separate ops' error


def test_one_op_decoding_blocks_on_gemma3(default_model):
    """The default model's blocks (Gemma 3: sandwich norms, q/k norms, sliding-window layers, two RoPE bases)."""
    cg = default_model
    if any(block.step is None for block in cg.model.model.layers):
        pytest.skip("the C++ kernels did not build here")
    config = cg.model.config
    cg.model.config = dataclasses.replace(config, sliding_window=16)  # decoding crosses the window in a few tokens
    try:
        source = "import os\n\ndef walk(root):\n    for name in os.listdir(root):\n        yield name\n"
        ids = cg.tokenizer.encode(source)
        pairs = _decoded_with_and_without_block_steps(cg, ids)
    finally:
        cg.model.config = config
    assert len(ids) > 24
    for fused, separate in pairs:
        assert torch.equal(fused, separate)


def _present_pages(t: torch.Tensor) -> float:
    """The share of the pages under tensor t that are mapped in this process now (/proc/self/pagemap's bit 63)."""
    import mmap

    first, last = t.data_ptr() // mmap.PAGESIZE, (t.data_ptr() + t.numel() * t.element_size() - 1) // mmap.PAGESIZE
    with open("/proc/self/pagemap", "rb") as f:
        f.seek(first * 8)
        entries = np.frombuffer(f.read((last - first + 1) * 8), dtype=np.uint64)
    return float(((entries >> np.uint64(63)) & np.uint64(1)).mean())


def test_packed_head_uses_exactly_the_gguf_weights(quantized):
    """The Q8_0 matrix packed for bfloat16 activations (16 rows interleaved): its rows are the gguf package's
    values bit for bit, its products those of the exact weights (float64 reference), a row's result the same
    alone or among others, and packing in chunks (each span handed to `release` once packed) or at once gives
    the same bytes."""
    from gguf.quants import dequantize as reference

    from codegemma.kernels import GGUFMatrix, pack, packable, packed_dot, packed_rows

    t = next(t for t in open_gguf(quantized["Q8_0"]).tensors if t.name == "token_embd.weight")
    rows, cols = int(t.shape[1]), int(t.shape[0])
    m = GGUFMatrix(torch.from_numpy(np.asarray(t.data).view(np.uint8).reshape(-1)), "Q8_0", rows, cols)
    if not packable(m):
        pytest.skip("no AVX512-BF16 kernels here (the row layout serves bfloat16 activations)")
    exact = torch.from_numpy(np.array(reference(t.data, t.tensor_type), dtype=np.float32)).reshape(rows, cols)
    spans = []
    packed = pack(m, release=lambda start, end: spans.append((start, end)), chunk_rows=48)
    assert torch.equal(packed, pack(m))
    assert spans[0][0] == m.raw.data_ptr() and spans[-1][1] == m.raw.data_ptr() + m.raw.numel()
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    ids = torch.tensor([rows - 1, 0, 17, 3])
    assert torch.equal(packed_rows(packed, m, ids, torch.float32), exact[ids])
    assert torch.equal(packed_rows(packed, m, ids, torch.bfloat16), exact[ids].bfloat16())
    torch.manual_seed(0)
    x = torch.randn(11, cols).bfloat16()
    got = packed_dot(x, packed, m)
    want = x.double() @ exact.double().T
    assert (got.double() - want).abs().max() < 1e-5 * want.abs().max()
    assert torch.equal(got, torch.cat([packed_dot(x[i:i + 1], packed, m) for i in range(11)]))


def test_a_bfloat16_load_packs_the_head_and_lets_its_file_pages_go():
    """`load("default")` packs the Q8_0 head and releases the file's pages of it as it goes (memory holds the
    head once); the packed embedding looks rows up as the blocks give them; a float32 load keeps the blocks."""
    from codegemma.kernels import dequant_rows, packable

    cg = load("default")
    head = cg.model.model.embed_tokens
    if not packable(head.matrix):
        pytest.skip("no AVX512-BF16 kernels here")
    assert head.packed is not None and head.packed.numel() == head.matrix.raw.numel()
    assert _present_pages(head.matrix.raw) < 0.05
    ids = torch.tensor([[2, 818, 262143]])
    assert torch.equal(head(ids)[0], dequant_rows(head.matrix, ids[0], torch.bfloat16))
    assert load("default", dtype="float32").model.model.embed_tokens.packed is None
