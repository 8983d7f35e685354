"""The llama.cpp reference is built portably: no AMX kernels (they crash), ISA families from the CPU."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
from llama_cpp_cmake_args import cmake_args, cpu_flags  # noqa: E402

EPYC_ZEN4 = ("fpu sse4_2 avx avx2 bmi2 fma f16c avx512f avx512dq avx512cd avx512bw avx512vl avx512vbmi "
             "avx512_vnni avx512_bf16")
SAPPHIRE_RAPIDS = EPYC_ZEN4 + " avx_vnni amx_bf16 amx_tile amx_int8"
HASWELL = "fpu sse4_2 avx avx2 bmi2 fma f16c"


def args_for(flags: str) -> dict[str, str]:
    text = cmake_args(cpu_flags(f"processor\t: 0\nflags\t\t: {flags}\n"))
    return dict(a.removeprefix("-D").split("=") for a in text.split())


def test_amx_is_off_even_where_the_cpu_has_it():
    spr = args_for(SAPPHIRE_RAPIDS)
    assert spr["GGML_NATIVE"] == "OFF"
    assert spr["GGML_AMX_TILE"] == spr["GGML_AMX_INT8"] == spr["GGML_AMX_BF16"] == "OFF"
    assert spr["GGML_AVX512"] == spr["GGML_AVX512_BF16"] == spr["GGML_AVX_VNNI"] == "ON"


def test_families_follow_the_cpu():
    zen4, haswell = args_for(EPYC_ZEN4), args_for(HASWELL)
    assert zen4["GGML_AVX512_VBMI"] == "ON" and zen4["GGML_AVX_VNNI"] == "OFF"
    assert haswell["GGML_AVX2"] == "ON" and haswell["GGML_AVX512"] == "OFF" and haswell["GGML_AVX512_VNNI"] == "OFF"


def test_this_machine_gets_what_its_cpu_reports():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "llama_cpp_cmake_args.py")], capture_output=True,
                         text=True, check=True).stdout.split()
    flags = cpu_flags(Path("/proc/cpuinfo").read_text())
    assert ("-DGGML_AVX512=ON" in out) == ({"avx512f", "avx512bw"} <= flags)
    assert "-DGGML_AMX_INT8=OFF" in out


def test_the_installed_reference_has_no_amx_kernels():
    """The crashing kernel (ggml_backend_amx_mul_mat) is not in the llama.cpp libraries `make test` installed."""
    llama_cpp = pytest.importorskip("llama_cpp")
    libs = sorted((Path(llama_cpp.__file__).parent / "lib").glob("*.so*"))
    assert any("ggml-cpu" in lib.name for lib in libs), libs
    for lib in libs:
        assert b"ggml_backend_amx" not in lib.read_bytes(), lib.name
