"""GGML block formats dequantized in PyTorch (vectorised over blocks), from ggml-quants.c's reference code.

Each function takes the raw bytes as a uint8 tensor of shape (n_blocks, block_bytes) and returns
float32 (n_blocks, block_values). Types without a function here go through the gguf package.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

QK_K = 256


def _f16(b: torch.Tensor) -> torch.Tensor:
    """Little-endian float16 from (n, 2) bytes -> (n, 1) float32."""
    return b.contiguous().view(torch.float16).float()


def _nibbles(qs: torch.Tensor) -> torch.Tensor:
    """(n, k) bytes -> (n, 2k): all low nibbles, then all high nibbles (ggml's order within a block)."""
    return torch.cat([qs & 0x0F, qs >> 4], dim=-1)


def _q5_high(qh: torch.Tensor) -> torch.Tensor:
    """(n, 4) bytes of a little-endian uint32 -> (n, 32) fifth bits, value j is bit j."""
    bits = (qh[:, :, None] >> torch.arange(8, dtype=torch.uint8, device=qh.device)) & 1  # (n, 4, 8)
    return bits.reshape(-1, 32)


def q8_0(b: torch.Tensor) -> torch.Tensor:
    return _f16(b[:, :2]) * b[:, 2:].contiguous().view(torch.int8).float()


def q4_0(b: torch.Tensor) -> torch.Tensor:
    return _f16(b[:, :2]) * (_nibbles(b[:, 2:]).float() - 8)


def q4_1(b: torch.Tensor) -> torch.Tensor:
    return _f16(b[:, :2]) * _nibbles(b[:, 4:]).float() + _f16(b[:, 2:4])


def q5_0(b: torch.Tensor) -> torch.Tensor:
    q = _nibbles(b[:, 6:]) | (_q5_high(b[:, 2:6]) << 4)
    return _f16(b[:, :2]) * (q.float() - 16)


def q5_1(b: torch.Tensor) -> torch.Tensor:
    q = _nibbles(b[:, 8:]) | (_q5_high(b[:, 4:8]) << 4)
    return _f16(b[:, :2]) * q.float() + _f16(b[:, 2:4])


def _k4_scales(s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The 8 six-bit scales and mins packed in 12 bytes (ggml's get_scale_min_k4)."""
    s = s.long()
    lo_sc, lo_m = s[:, 0:4] & 63, s[:, 4:8] & 63
    hi_sc = (s[:, 8:12] & 0x0F) | ((s[:, 0:4] >> 6) << 4)
    hi_m = (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)
    return torch.cat([lo_sc, hi_sc], 1).float(), torch.cat([lo_m, hi_m], 1).float()


def q4_k(b: torch.Tensor) -> torch.Tensor:
    d, dmin = _f16(b[:, 0:2]), _f16(b[:, 2:4])
    sc, mn = _k4_scales(b[:, 4:16])  # (n, 8)
    qs = b[:, 16:144].reshape(-1, 4, 32)  # four 64-value chunks, low nibbles then high
    q = torch.stack([qs & 0x0F, qs >> 4], dim=2).reshape(-1, 8, 32).float()
    return (d[:, :, None] * sc[:, :, None] * q - dmin[:, :, None] * mn[:, :, None]).reshape(-1, QK_K)


def q5_k(b: torch.Tensor) -> torch.Tensor:
    d, dmin = _f16(b[:, 0:2]), _f16(b[:, 2:4])
    sc, mn = _k4_scales(b[:, 4:16])
    qh = b[:, 16:48]  # (n, 32): bit 2j / 2j+1 is the fifth bit of sub-block 2j / 2j+1
    qs = b[:, 48:176].reshape(-1, 4, 32)
    low = torch.stack([qs & 0x0F, qs >> 4], dim=2).reshape(-1, 8, 32)
    high = (qh[:, None, :] >> torch.arange(8, dtype=torch.uint8, device=b.device)[None, :, None]) & 1
    q = (low | (high << 4)).float()
    return (d[:, :, None] * sc[:, :, None] * q - dmin[:, :, None] * mn[:, :, None]).reshape(-1, QK_K)


def q6_k(b: torch.Tensor) -> torch.Tensor:
    ql = b[:, 0:128].reshape(-1, 2, 64).long()
    qh = b[:, 128:192].reshape(-1, 2, 32).long()
    sc = b[:, 192:208].contiguous().view(torch.int8).float().reshape(-1, 2, 8)
    d = _f16(b[:, 208:210])
    q1 = (ql[:, :, :32] & 0xF) | ((qh & 3) << 4)
    q2 = (ql[:, :, 32:] & 0xF) | (((qh >> 2) & 3) << 4)
    q3 = (ql[:, :, :32] >> 4) | (((qh >> 4) & 3) << 4)
    q4 = (ql[:, :, 32:] >> 4) | (((qh >> 6) & 3) << 4)
    q = torch.stack([q1, q2, q3, q4], dim=2).float() - 32  # (n, 2, 4, 32)
    scale = sc.reshape(-1, 2, 4, 2).repeat_interleave(16, dim=3)  # sub-blocks of 16 values
    return (d[:, :, None, None] * scale * q).reshape(-1, QK_K)


def q2_k(b: torch.Tensor) -> torch.Tensor:
    scales = b[:, 0:16].long()
    qs = b[:, 16:80].reshape(-1, 2, 32).long()
    d, dmin = _f16(b[:, 80:82]), _f16(b[:, 82:84])
    shifts = torch.arange(0, 8, 2, device=b.device)
    q = (qs[:, :, None, :] >> shifts[None, None, :, None]) & 3  # (n, 2, 4, 32)
    sc = scales.reshape(-1, 2, 4, 2)
    dl = (d[:, :, None, None] * (sc & 0xF)).repeat_interleave(16, dim=3)
    ml = (dmin[:, :, None, None] * (sc >> 4)).repeat_interleave(16, dim=3)
    return (dl * q - ml).reshape(-1, QK_K)


def _q3_scales(s: torch.Tensor) -> torch.Tensor:
    """16 six-bit signed scales from 12 bytes (the aux[] shuffle in dequantize_row_q3_K)."""
    s = s.long()
    low = torch.cat([s[:, 0:8] & 0x0F, s[:, 0:8] >> 4], 1)  # (n, 16)
    high = (s[:, 8:12, None] >> torch.arange(0, 8, 2, device=s.device)) & 3  # (n, 4, 4): byte k, shift 2j
    high = high.permute(0, 2, 1).reshape(-1, 16)  # scale i takes bits 2*(i // 4) of byte i % 4
    return (low | (high << 4)).float() - 32


def q3_k(b: torch.Tensor) -> torch.Tensor:
    hmask = b[:, 0:32].long()
    qs = b[:, 32:96].reshape(-1, 2, 32).long()
    sc = _q3_scales(b[:, 96:108]).reshape(-1, 2, 4, 2).repeat_interleave(16, dim=3)
    d = _f16(b[:, 108:110])
    shifts = torch.arange(0, 8, 2, device=b.device)
    low = (qs[:, :, None, :] >> shifts[None, None, :, None]) & 3  # (n, 2, 4, 32)
    bit = torch.arange(8, device=b.device).reshape(2, 4)  # hmask bit m for chunk n, shift j
    high = (hmask[:, None, None, :] >> bit[None, :, :, None]) & 1
    q = low - 4 * (1 - high)
    return (d[:, :, None, None] * sc * q.float()).reshape(-1, QK_K)


KERNELS: dict[str, tuple[int, int, Callable[[torch.Tensor], torch.Tensor]]] = {
    # name: (values per block, bytes per block, kernel)
    "Q8_0": (32, 34, q8_0), "Q4_0": (32, 18, q4_0), "Q4_1": (32, 20, q4_1), "Q5_0": (32, 22, q5_0),
    "Q5_1": (32, 24, q5_1), "Q2_K": (QK_K, 84, q2_k), "Q3_K": (QK_K, 110, q3_k), "Q4_K": (QK_K, 144, q4_k),
    "Q5_K": (QK_K, 176, q5_k), "Q6_K": (QK_K, 210, q6_k),
}


def dequantize_blocks(raw: torch.Tensor, type_name: str, n_values: int,
                      dtype: torch.dtype = torch.float32) -> torch.Tensor | None:
    """The values of a quantized tensor's raw bytes (computed in float32, stored as `dtype` chunk by
    chunk, so a bfloat16 load never holds a float32 copy of a big tensor), or None without a kernel."""
    if type_name not in KERNELS:
        return None
    per_block, nbytes, kernel = KERNELS[type_name]
    if raw.numel() * per_block != n_values * nbytes:
        raise ValueError(f"{type_name}: {raw.numel()} bytes cannot hold {n_values} values")
    blocks = raw.reshape(-1, nbytes)
    out = torch.empty(blocks.shape[0], per_block, dtype=dtype, device=raw.device)
    step = 1 << 16  # bounded temporaries on big tensors
    for start in range(0, blocks.shape[0], step):
        out[start:start + step] = kernel(blocks[start:start + step])
    return out.reshape(-1)
