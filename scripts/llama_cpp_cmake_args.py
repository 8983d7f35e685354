"""Prints the CMAKE_ARGS for a portable llama-cpp-python build on this x86-64 CPU (the test reference).

Why not a native build: on Intel CPUs with AMX (Sapphire Rapids and later) a native build compiles in
ggml's AMX kernels, and `ggml_backend_amx_mul_mat` crashes on the first batched evaluation of a
Q4_K_M model (llama.cpp issue 20824, unfixed). So GGML_NATIVE is off, the AMX kernels are off, and
each instruction-set family is switched on only where /proc/cpuinfo reports it.
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path

# ggml option -> the /proc/cpuinfo flags it needs (all of them)
FAMILIES = {
    "GGML_SSE42": ("sse4_2",),
    "GGML_AVX": ("avx",),
    "GGML_AVX2": ("avx2",),
    "GGML_BMI2": ("bmi2",),
    "GGML_FMA": ("fma",),
    "GGML_F16C": ("f16c",),
    "GGML_AVX_VNNI": ("avx_vnni",),
    "GGML_AVX512": ("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"),
    "GGML_AVX512_VBMI": ("avx512f", "avx512vbmi"),
    "GGML_AVX512_VNNI": ("avx512f", "avx512_vnni"),
    "GGML_AVX512_BF16": ("avx512f", "avx512_bf16"),
}
ALWAYS_OFF = ("GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16")  # crash on batched Q4_K_M evaluation


def cpu_flags(cpuinfo: str) -> set[str]:
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cmake_args(flags: set[str]) -> str:
    args = ["-DGGML_NATIVE=OFF"]
    args += [f"-D{name}={'ON' if set(need) <= flags else 'OFF'}" for name, need in FAMILIES.items()]
    args += [f"-D{name}=OFF" for name in ALWAYS_OFF]
    return " ".join(args)


def main() -> int:
    if platform.machine() not in ("x86_64", "AMD64"):
        print("-DGGML_NATIVE=OFF")  # other architectures: the portable defaults
        return 0
    print(cmake_args(cpu_flags(Path("/proc/cpuinfo").read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
