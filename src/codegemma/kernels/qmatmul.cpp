// Matrix-vector products that read GGML's quantized blocks in place (codegemma::qgemv), and their
// dequantization (codegemma::dequant_rows), as torch.library ops on CPU; with RMSNorm, RoPE and single-query
// attention (rms_norm, rope, attend1) for the rest of a decoding step.
//
// Exactness: every weight a product uses is the float32 value the `gguf` package's dequantization
// gives (ggml-quants.c's reference order: d * q, d * q + m, (d * sc) * q - (dmin * m)). Activations
// are read as float32 (bfloat16 widens exactly) and accumulated in float32 with fused multiply-adds in
// 16-lane vectors (one AVX-512 register or two AVX2 ones), four accumulators a row, blocks in file order
// (Q5_0, Q4_K and Q6_K against bfloat16 activations where the CPU has AVX512-BF16: see row_dot_q5_0_bf16,
// row_dot_q4_k_bf16 and row_dot_q6_k_bf16; and a Q8_0 output head packed 16 rows at a time: packed_dot). A row's
// result never depends on how many rows share the call: rows only share the decoded weights, never an accumulator.
//
// Built on first use by codegemma.kernels with -O3 -march=native (the cache is keyed by the CPU's
// flags), threads from ATen's own pool (at::parallel_for).

#include <ATen/Parallel.h>
#include <torch/library.h>
#include <torch/torch.h>

#include <immintrin.h>

#if !defined(__AVX2__) || !defined(__FMA__) || !defined(__F16C__)
#error "the quantized kernels need AVX2, FMA and F16C (x86-64-v3)"
#endif

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cmath>
#include <cstring>
#include <vector>

namespace {

// ggml type ids (ggml.h)
enum : int64_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, BF16 = 30,
};

constexpr int QK_K = 256;

struct Format {
  int values;  // per block
  int bytes;   // per block
};

Format format_of(int64_t type) {
  switch (type) {
    case F32: return {1, 4};
    case F16: return {1, 2};
    case BF16: return {1, 2};
    case Q4_0: return {32, 18};
    case Q4_1: return {32, 20};
    case Q5_0: return {32, 22};
    case Q5_1: return {32, 24};
    case Q8_0: return {32, 34};
    case Q2_K: return {QK_K, 84};
    case Q3_K: return {QK_K, 110};
    case Q4_K: return {QK_K, 144};
    case Q5_K: return {QK_K, 176};
    case Q6_K: return {QK_K, 210};
    default: TORCH_CHECK(false, "ggml type ", type, " has no kernel");
  }
}

inline float f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

inline float bf16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  uint32_t bits = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// ---- one block to float32, exactly as gguf's dequantization -----------------------------------------
// Scalar loops over fixed trip counts: GCC vectorizes them at -O3 -march=native.

inline void dec_q8_0(const uint8_t* b, float* y) {
  const float d = f16(b);
  const int8_t* q = reinterpret_cast<const int8_t*>(b + 2);
  for (int i = 0; i < 32; ++i) y[i] = d * float(q[i]);
}

inline void dec_q4_0(const uint8_t* b, float* y) {
  const float d = f16(b);
  const uint8_t* q = b + 2;
  for (int i = 0; i < 16; ++i) {
    y[i] = d * float(int(q[i] & 0x0F) - 8);
    y[i + 16] = d * float(int(q[i] >> 4) - 8);
  }
}

inline void dec_q4_1(const uint8_t* b, float* y) {
  const float d = f16(b), m = f16(b + 2);
  const uint8_t* q = b + 4;
  for (int i = 0; i < 16; ++i) {
    y[i] = std::fma(d, float(q[i] & 0x0F), m);  // d * q is exact: one rounding, as d * q + m
    y[i + 16] = std::fma(d, float(q[i] >> 4), m);
  }
}

inline void dec_q5_0(const uint8_t* b, float* y) {
  const float d = f16(b);
  uint32_t qh;
  std::memcpy(&qh, b + 2, 4);
  const uint8_t* q = b + 6;
  for (int i = 0; i < 16; ++i) {
    const int lo = (q[i] & 0x0F) | (((qh >> i) & 1) << 4);
    const int hi = (q[i] >> 4) | (((qh >> (i + 16)) & 1) << 4);
    y[i] = d * float(lo - 16);
    y[i + 16] = d * float(hi - 16);
  }
}

inline void dec_q5_1(const uint8_t* b, float* y) {
  const float d = f16(b), m = f16(b + 2);
  uint32_t qh;
  std::memcpy(&qh, b + 4, 4);
  const uint8_t* q = b + 8;
  for (int i = 0; i < 16; ++i) {
    const int lo = (q[i] & 0x0F) | (((qh >> i) & 1) << 4);
    const int hi = (q[i] >> 4) | (((qh >> (i + 16)) & 1) << 4);
    y[i] = std::fma(d, float(lo), m);
    y[i + 16] = std::fma(d, float(hi), m);
  }
}

// The 8 six-bit scales and mins of Q4_K / Q5_K (ggml's get_scale_min_k4).
inline void k4_scales(const uint8_t* s, float d, float dmin, float* sc, float* mn) {
  // the eight 6-bit scales and mins of 12 bytes, rearranged four at a time in 32-bit words: scale j is
  // s[j] & 63 (j < 4) or (s[j + 4] & 15) | (s[j - 4] >> 6) << 4, min j is s[j + 4] & 63 or
  // (s[j + 4] >> 4) | (s[j] >> 6) << 4; then d * scale and dmin * min, as one float multiplication each
  uint32_t w[4];
  std::memcpy(w, s, 12);
  constexpr uint32_t low6 = 0x3F3F3F3F, low4 = 0x0F0F0F0F, low2 = 0x03030303;
  w[3] = ((w[2] >> 4) & low4) | (((w[1] >> 6) & low2) << 4);  // mins 4-7
  const uint32_t mins_low = w[1] & low6;  // mins 0-3
  w[1] = (w[2] & low4) | (((w[0] >> 6) & low2) << 4);  // scales 4-7
  w[2] = mins_low;
  w[0] &= low6;  // scales 0-3
  const __m256 a = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(w))));
  const __m256 m = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(w + 2))));
  _mm256_storeu_ps(sc, _mm256_mul_ps(_mm256_set1_ps(d), a));
  _mm256_storeu_ps(mn, _mm256_mul_ps(_mm256_set1_ps(dmin), m));
}

inline void dec_q4_k(const uint8_t* b, float* y) {
  float sc[8], mn[8];
  k4_scales(b + 4, f16(b), f16(b + 2), sc, mn);
  const uint8_t* q = b + 16;
  for (int c = 0; c < 4; ++c) {  // 64 values: 32 low nibbles, then 32 high nibbles
    const float s0 = sc[2 * c], m0 = mn[2 * c], s1 = sc[2 * c + 1], m1 = mn[2 * c + 1];
    for (int l = 0; l < 32; ++l) {
      y[64 * c + l] = std::fma(s0, float(q[32 * c + l] & 0x0F), -m0);  // (d * sc) * q - dmin * m
      y[64 * c + 32 + l] = std::fma(s1, float(q[32 * c + l] >> 4), -m1);
    }
  }
}

inline void dec_q5_k(const uint8_t* b, float* y) {
  float sc[8], mn[8];
  k4_scales(b + 4, f16(b), f16(b + 2), sc, mn);
  const uint8_t* qh = b + 16;
  const uint8_t* q = b + 48;
  for (int c = 0; c < 4; ++c) {
    const float s0 = sc[2 * c], m0 = mn[2 * c], s1 = sc[2 * c + 1], m1 = mn[2 * c + 1];
    for (int l = 0; l < 32; ++l) {
      const int lo = (q[32 * c + l] & 0x0F) | (((qh[l] >> (2 * c)) & 1) << 4);
      const int hi = (q[32 * c + l] >> 4) | (((qh[l] >> (2 * c + 1)) & 1) << 4);
      y[64 * c + l] = std::fma(s0, float(lo), -m0);
      y[64 * c + 32 + l] = std::fma(s1, float(hi), -m1);
    }
  }
}

inline void dec_q6_k(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = f16(b + 208);
  for (int half = 0; half < 2; ++half) {
    float s[8];
    for (int j = 0; j < 8; ++j) s[j] = d * float(sc[8 * half + j]);  // (d * sc) * q, as gguf
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = int((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = int((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = int((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = int((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = s[is] * float(q1);
      y[l + 32] = s[is + 2] * float(q2);
      y[l + 64] = s[is + 4] * float(q3);
      y[l + 96] = s[is + 6] * float(q4);
    }
    y += 128;
    ql += 64;
    qh += 32;
  }
}

inline void dec_q2_k(const uint8_t* b, float* y) {
  const uint8_t* sc = b;
  const uint8_t* q = b + 16;
  const float d = f16(b + 80), dmin = f16(b + 82);
  int is = 0;
  for (int n = 0; n < QK_K; n += 128) {
    for (int shift = 0; shift < 8; shift += 2) {
      for (int part = 0; part < 2; ++part) {
        const float dl = d * float(sc[is] & 0x0F), ml = dmin * float(sc[is] >> 4);
        ++is;
        for (int l = 0; l < 16; ++l) *y++ = dl * float((q[16 * part + l] >> shift) & 3) - ml;
      }
    }
    q += 32;
  }
}

inline void dec_q3_k(const uint8_t* b, float* y) {
  const uint8_t* hm = b;
  const uint8_t* q = b + 32;
  const uint8_t* s = b + 96;
  const float d = f16(b + 108);
  // the 16 six-bit scales (ggml's kmask unpacking)
  int8_t scales[16];
  for (int j = 0; j < 4; ++j) {
    scales[j] = int8_t(((s[j] & 0x0F) | (((s[8 + j] >> 0) & 3) << 4)) - 32);
    scales[j + 4] = int8_t(((s[j + 4] & 0x0F) | (((s[8 + j] >> 2) & 3) << 4)) - 32);
    scales[j + 8] = int8_t(((s[j] >> 4) | (((s[8 + j] >> 4) & 3) << 4)) - 32);
    scales[j + 12] = int8_t(((s[j + 4] >> 4) | (((s[8 + j] >> 6) & 3) << 4)) - 32);
  }
  int is = 0;
  uint8_t m = 1;
  for (int n = 0; n < QK_K; n += 128) {
    for (int shift = 0; shift < 8; shift += 2) {
      for (int part = 0; part < 2; ++part) {
        const float dl = d * float(scales[is++]);
        for (int l = 0; l < 16; ++l) {
          const int k = 16 * part + l;
          const int v = int((q[k] >> shift) & 3) - ((hm[k] & m) ? 0 : 4);
          *y++ = dl * float(v);
        }
      }
      m <<= 1;
    }
    q += 32;
  }
}

inline void dec_f32(const uint8_t* b, float* y) { std::memcpy(y, b, 4); }
inline void dec_f16(const uint8_t* b, float* y) { *y = f16(b); }
inline void dec_bf16(const uint8_t* b, float* y) { *y = bf16(b); }

using Decoder = void (*)(const uint8_t*, float*);

Decoder decoder_of(int64_t type) {
  switch (type) {
    case F32: return dec_f32;
    case F16: return dec_f16;
    case BF16: return dec_bf16;
    case Q4_0: return dec_q4_0;
    case Q4_1: return dec_q4_1;
    case Q5_0: return dec_q5_0;
    case Q5_1: return dec_q5_1;
    case Q8_0: return dec_q8_0;
    case Q2_K: return dec_q2_k;
    case Q3_K: return dec_q3_k;
    case Q4_K: return dec_q4_k;
    case Q5_K: return dec_q5_k;
    case Q6_K: return dec_q6_k;
    default: TORCH_CHECK(false, "ggml type ", type, " has no kernel");
  }
}

// ---- dot products, weights decoded 16 at a time in vector registers -----------------------------------
// GCC vector extensions: one source for AVX-512 (one register) and AVX2 (two).

typedef float f32x16 __attribute__((vector_size(64)));
typedef int32_t i32x16 __attribute__((vector_size(64)));
typedef uint32_t u32x16 __attribute__((vector_size(64)));
typedef uint8_t u8x16 __attribute__((vector_size(16)));
typedef int8_t i8x16 __attribute__((vector_size(16)));

constexpr int ROWS = 4;  // activation rows that share one decoding of the weights
constexpr int ACCS = 4;  // independent accumulators per row (16-value group g goes to g % ACCS)
constexpr int LANES = 16;

// 16 bytes widened to 16 int32 lanes (GCC scalarizes __builtin_convertvector from bytes, so intrinsics)
inline i32x16 load_u8(const uint8_t* p) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
#if defined(__AVX512F__)
  return (i32x16)_mm512_cvtepu8_epi32(v);
#else
  i32x16 r;
  const __m256i lo = _mm256_cvtepu8_epi32(v), hi = _mm256_cvtepu8_epi32(_mm_srli_si128(v, 8));
  std::memcpy(&r, &lo, 32);
  std::memcpy(reinterpret_cast<char*>(&r) + 32, &hi, 32);
  return r;
#endif
}

inline i32x16 load_i8(const uint8_t* p) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
#if defined(__AVX512F__)
  return (i32x16)_mm512_cvtepi8_epi32(v);
#else
  i32x16 r;
  const __m256i lo = _mm256_cvtepi8_epi32(v), hi = _mm256_cvtepi8_epi32(_mm_srli_si128(v, 8));
  std::memcpy(&r, &lo, 32);
  std::memcpy(reinterpret_cast<char*>(&r) + 32, &hi, 32);
  return r;
#endif
}

inline f32x16 to_f32(i32x16 v) { return __builtin_convertvector(v, f32x16); }

inline f32x16 splat(float f) { return f32x16{} + f; }

inline f32x16 loadf(const float* p) {
  f32x16 v;
  std::memcpy(&v, p, 64);
  return v;
}

const u32x16 IOTA = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

inline float hsum(f32x16 a) {
  typedef float f32x8 __attribute__((vector_size(32)));
  typedef float f32x4 __attribute__((vector_size(16)));
  f32x8 b = __builtin_shufflevector(a, a, 0, 1, 2, 3, 4, 5, 6, 7) + __builtin_shufflevector(a, a, 8, 9, 10, 11, 12, 13, 14, 15);
  f32x4 c = __builtin_shufflevector(b, b, 0, 1, 2, 3) + __builtin_shufflevector(b, b, 4, 5, 6, 7);
  return (c[0] + c[2]) + (c[1] + c[3]);
}

// The accumulators of a row added pairwise, in a fixed order.
inline f32x16 combine(const f32x16* a) {
  if constexpr (ACCS == 4) return (a[0] + a[1]) + (a[2] + a[3]);
  else if constexpr (ACCS == 2) return a[0] + a[1];
  else return a[0];
}

// 16 in each lane whose bit of `bits` (bit i for lane i) is 0, else 0: one masked move with AVX-512.
inline i32x16 fifth_bit_off(uint32_t bits) {
#if defined(__AVX512F__)
  return (i32x16)_mm512_maskz_mov_epi32(__mmask16(~bits & 0xFFFF), _mm512_set1_epi32(16));
#else
  const u32x16 h = u32x16{} + bits;
  return (i32x16)((((h >> IOTA) & 1) ^ 1) << 4);
#endif
}

// Each format calls f(group, w) for the 16-value groups of one block in order, w the exact weights.
struct Q8_0F {
  static constexpr int values = 32, bytes = 34;
  template <class F> static inline void block(const uint8_t* b, F&& f) {
    const f32x16 d = splat(f16(b));
    f(0, d * to_f32(load_i8(b + 2)));
    f(1, d * to_f32(load_i8(b + 18)));
  }
};

struct Q4_0F {
  static constexpr int values = 32, bytes = 18;
  template <class F> static inline void block(const uint8_t* b, F&& f) {
    const f32x16 d = splat(f16(b));
    const i32x16 q = load_u8(b + 2);
    f(0, d * to_f32((q & 15) - 8));
    f(1, d * to_f32((q >> 4) - 8));
  }
};

struct Q4_1F {
  static constexpr int values = 32, bytes = 20;
  template <class F> static inline void block(const uint8_t* b, F&& f) {
    const f32x16 d = splat(f16(b)), m = splat(f16(b + 2));
    const i32x16 q = load_u8(b + 4);
    f(0, d * to_f32(q & 15) + m);  // d * q is exact: fused or not, one rounding
    f(1, d * to_f32(q >> 4) + m);
  }
};

struct Q5_0F {
  static constexpr int values = 32, bytes = 22;
  template <class F> static inline void block(const uint8_t* b, F&& f) {
    const f32x16 d = splat(f16(b));
    uint32_t qh;
    std::memcpy(&qh, b + 2, 4);
    const i32x16 q = load_u8(b + 6);
    f(0, d * to_f32((q & 15) - fifth_bit_off(qh)));  // q - 16 where the fifth bit is 0: ((q & 15) | h << 4) - 16
    f(1, d * to_f32((q >> 4) - fifth_bit_off(qh >> 16)));
  }
};

struct Q5_1F {
  static constexpr int values = 32, bytes = 24;
  template <class F> static inline void block(const uint8_t* b, F&& f) {
    const f32x16 d = splat(f16(b)), m = splat(f16(b + 2));
    uint32_t qh;
    std::memcpy(&qh, b + 4, 4);
    const i32x16 q = load_u8(b + 8);
    f(0, d * to_f32((q & 15) + 16 - fifth_bit_off(qh)) + m);
    f(1, d * to_f32((q >> 4) + 16 - fifth_bit_off(qh >> 16)) + m);
  }
};

struct Q4_KF {
  static constexpr int values = QK_K, bytes = 144;
  template <class F> static inline void block(const uint8_t* b, F&& f) {
    float sc[8], mn[8];
    k4_scales(b + 4, f16(b), f16(b + 2), sc, mn);
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
      const i32x16 q0 = load_u8(b + 16 + 32 * c), q1 = load_u8(b + 16 + 32 * c + 16);
      const f32x16 s0 = splat(sc[2 * c]), m0 = splat(mn[2 * c]), s1 = splat(sc[2 * c + 1]), m1 = splat(mn[2 * c + 1]);
      f(4 * c + 0, s0 * to_f32(q0 & 15) - m0);  // (d * sc) * q exact: one rounding, as gguf
      f(4 * c + 1, s0 * to_f32(q1 & 15) - m0);
      f(4 * c + 2, s1 * to_f32(q0 >> 4) - m1);
      f(4 * c + 3, s1 * to_f32(q1 >> 4) - m1);
    }
  }
};

struct Q5_KF {
  static constexpr int values = QK_K, bytes = 176;
  template <class F> static inline void block(const uint8_t* b, F&& f) {
    float sc[8], mn[8];
    k4_scales(b + 4, f16(b), f16(b + 2), sc, mn);
    const i32x16 h0 = load_u8(b + 16), h1 = load_u8(b + 32);
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
      const i32x16 q0 = load_u8(b + 48 + 32 * c), q1 = load_u8(b + 48 + 32 * c + 16);
      const f32x16 s0 = splat(sc[2 * c]), m0 = splat(mn[2 * c]), s1 = splat(sc[2 * c + 1]), m1 = splat(mn[2 * c + 1]);
      const int lo = 2 * c, hi = 2 * c + 1;
      f(4 * c + 0, s0 * to_f32((q0 & 15) | (((h0 >> lo) & 1) << 4)) - m0);
      f(4 * c + 1, s0 * to_f32((q1 & 15) | (((h1 >> lo) & 1) << 4)) - m0);
      f(4 * c + 2, s1 * to_f32((q0 >> 4) | (((h0 >> hi) & 1) << 4)) - m1);
      f(4 * c + 3, s1 * to_f32((q1 >> 4) | (((h1 >> hi) & 1) << 4)) - m1);
    }
  }
};

struct Q6_KF {
  static constexpr int values = QK_K, bytes = 210;
  template <class F> static inline void block(const uint8_t* b, F&& f) {
    const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
    const float d = f16(b + 208);
#pragma GCC unroll 2
    for (int half = 0; half < 2; ++half) {
      const uint8_t* ql = b + 64 * half;
      const uint8_t* qh = b + 128 + 32 * half;
#pragma GCC unroll 2
      for (int j = 0; j < 2; ++j) {  // values 16j.. of each 32-value quarter
        const i32x16 a = load_u8(ql + 16 * j), c = load_u8(ql + 32 + 16 * j), h = load_u8(qh + 16 * j);
        const int g = 8 * half + j;
        const int8_t* s = sc + 8 * half + j;
        f(g + 0, splat(d * float(s[0])) * to_f32(((a & 15) | ((h & 3) << 4)) - 32));  // (d * sc) * q
        f(g + 2, splat(d * float(s[2])) * to_f32(((c & 15) | (((h >> 2) & 3) << 4)) - 32));
        f(g + 4, splat(d * float(s[4])) * to_f32(((a >> 4) | (((h >> 4) & 3) << 4)) - 32));
        f(g + 6, splat(d * float(s[6])) * to_f32(((c >> 4) | (((h >> 6) & 3) << 4)) - 32));
      }
    }
  }
};

// Formats without a vector decoder (Q2_K, Q3_K, F16, BF16, F32): blocks decoded to a buffer first.
struct Buffered {
  Decoder dec;
  int values, bytes;
};

// One output row (cols weights at `row`) against `N` activation rows x[r * cols ...]:
// out[r * out_stride] = sum_j w_j * x[r][j].
template <class Fmt, int N>
void row_dot(const uint8_t* row, const float* x, int64_t cols, float* out, int64_t out_stride) {
  f32x16 acc[N][ACCS] = {};
  // blocks are taken STEP at a time so that every group's accumulator is known at compile time
  constexpr int GROUPS = Fmt::values / LANES, STEP = GROUPS >= ACCS ? 1 : ACCS / GROUPS;
  const int64_t blocks = cols / Fmt::values;
  auto one = [&](int64_t blk, int first_group) {
    const int64_t base = blk * Fmt::values;
    Fmt::block(row + blk * Fmt::bytes, [&](int g, f32x16 w) {
      const int a = (first_group + g) & (ACCS - 1);
#pragma GCC unroll 4
      for (int r = 0; r < N; ++r) acc[r][a] += w * loadf(x + r * cols + base + LANES * g);
    });
  };
  int64_t blk = 0;
  for (; blk + STEP <= blocks; blk += STEP) {
#pragma GCC unroll 4
    for (int s = 0; s < STEP; ++s) one(blk + s, s * GROUPS);
  }
  for (int s = 0; blk < blocks; ++blk, ++s) one(blk, s * GROUPS);
  for (int r = 0; r < N; ++r) out[r * out_stride] = hsum(combine(acc[r]));
}

template <int N>
void row_dot_buffered(const Buffered& fmt, const uint8_t* row, const float* x, int64_t cols, float* out,
                      int64_t out_stride) {
  f32x16 acc[N][ACCS] = {};
  alignas(64) float buf[QK_K];
  const int per_chunk = std::max(1, QK_K / fmt.values);
  const int64_t blocks = cols / fmt.values;
  for (int64_t b0 = 0; b0 < blocks; b0 += per_chunk) {
    const int64_t nb = std::min<int64_t>(per_chunk, blocks - b0);
    for (int64_t b = 0; b < nb; ++b) fmt.dec(row + (b0 + b) * fmt.bytes, buf + b * fmt.values);
    const int64_t base = b0 * fmt.values;
    for (int64_t j = 0; j < nb * fmt.values; j += LANES) {
      const f32x16 w = loadf(buf + j);
      const int g = int((base + j) / LANES) & (ACCS - 1);
      for (int r = 0; r < N; ++r) acc[r][g] += w * loadf(x + r * cols + base + j);
    }
  }
  for (int r = 0; r < N; ++r) out[r * out_stride] = hsum(combine(acc[r]));
}

// count output rows from `first`: rows of `n` activations, ROWS at a time
template <class Fmt, int N = ROWS>
inline void rest_dot(int rest, const uint8_t* row, const float* x, int64_t cols, float* out, int64_t stride) {
  if constexpr (N > 1) {
    if (rest == N - 1) return row_dot<Fmt, N - 1>(row, x, cols, out, stride);
    rest_dot<Fmt, N - 1>(rest, row, x, cols, out, stride);
  }
}

template <int N = ROWS>
inline void rest_dot_buffered(int rest, const Buffered& fmt, const uint8_t* row, const float* x, int64_t cols,
                              float* out, int64_t stride) {
  if constexpr (N > 1) {
    if (rest == N - 1) return row_dot_buffered<N - 1>(fmt, row, x, cols, out, stride);
    rest_dot_buffered<N - 1>(rest, fmt, row, x, cols, out, stride);
  }
}

// Asks for the bytes of the row `ahead` rows on, so the file's blocks stream in while this row computes
// (the hardware prefetcher alone reached half the memory bandwidth on these short runs of rows).
constexpr int64_t PREFETCH_ROWS = 4;

inline void prefetch_row(const uint8_t* row, int64_t row_bytes) {
  for (int64_t b = 0; b < row_bytes; b += 64) _mm_prefetch(reinterpret_cast<const char*>(row + b), _MM_HINT_T0);
}

template <class Fmt>
void rows_dot(const uint8_t* base, int64_t row_bytes, int64_t first, int64_t count, const float* x, int64_t n,
              int64_t cols, float* out, int64_t stride) {
  for (int64_t o = first; o < first + count; ++o) {
    const uint8_t* row = base + o * row_bytes;
    if (o + PREFETCH_ROWS < first + count) prefetch_row(row + PREFETCH_ROWS * row_bytes, row_bytes);
    int64_t r0 = 0;
    for (; r0 + ROWS <= n; r0 += ROWS) row_dot<Fmt, ROWS>(row, x + r0 * cols, cols, out + r0 * stride + o, stride);
    if (n > r0) rest_dot<Fmt>(int(n - r0), row, x + r0 * cols, cols, out + r0 * stride + o, stride);
  }
}

void rows_dot_buffered(const Buffered& fmt, const uint8_t* base, int64_t row_bytes, int64_t first, int64_t count,
                       const float* x, int64_t n, int64_t cols, float* out, int64_t stride) {
  for (int64_t o = first; o < first + count; ++o) {
    const uint8_t* row = base + o * row_bytes;
    int64_t r0 = 0;
    for (; r0 + ROWS <= n; r0 += ROWS)
      row_dot_buffered<ROWS>(fmt, row, x + r0 * cols, cols, out + r0 * stride + o, stride);
    if (n > r0) rest_dot_buffered(int(n - r0), fmt, row, x + r0 * cols, cols, out + r0 * stride + o, stride);
  }
}

#if defined(__AVX512BF16__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#define CODEGEMMA_BF16_DOT 1
// Q5_0 against bfloat16 activations (AVX512-BF16): a block's 32 weights q - 16 are small integers, exact in
// bfloat16, looked up from a 32-entry table by their 5-bit codes in one instruction; one dot-product
// instruction a row adds their exact products with the activations pairwise in float32, and d multiplies
// the block's sum (d * (q - 16) is exact in float32: the same weights as the float32 path, summed in
// another order). About half the instructions a weight of the float32 path.
// bfloat16 of the small integers i - offset for i < 32 (exact: small integers need no rounding), a table for
// one-instruction lookups by 5-bit codes.
inline __m512i small_ints_bf16_table(int offset) {
  alignas(64) uint16_t t[32];
  for (int i = 0; i < 32; ++i) {
    const float f = float(i - offset);
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    t[i] = uint16_t(bits >> 16);
  }
  return _mm512_load_si512(t);
}

template <int N>
void row_dot_q5_0_bf16(const uint8_t* row, const uint16_t* x, const float*, int64_t cols, float* out,
                       int64_t out_stride) {
  static const __m512i table = small_ints_bf16_table(16);
  __m512 acc[N][2];
  for (int r = 0; r < N; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  const int64_t blocks = cols / 32;
  auto one = [&](int64_t blk, int a) {
    const uint8_t* b = row + blk * 22;
    const __m512 d = _mm512_set1_ps(f16(b));
    uint32_t qh;
    std::memcpy(&qh, b + 2, 4);
    const __m128i qs = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 6));
    const __m128i lo = _mm_and_si128(qs, _mm_set1_epi8(15));
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(qs, 4), _mm_set1_epi8(15));
    __m512i codes = _mm512_cvtepu8_epi16(_mm256_set_m128i(hi, lo));  // value j in lane j
    codes = _mm512_mask_add_epi16(codes, __mmask32(qh), codes, _mm512_set1_epi16(16));  // the fifth bit
    const __m512bh w = (__m512bh)_mm512_permutexvar_epi16(codes, table);
#pragma GCC unroll 8
    for (int r = 0; r < N; ++r) {
      const __m512bh xv = (__m512bh)_mm512_loadu_si512(x + r * cols + blk * 32);
      acc[r][a] = _mm512_fmadd_ps(d, _mm512_dpbf16_ps(_mm512_setzero_ps(), w, xv), acc[r][a]);
    }
  };
  int64_t blk = 0;
  for (; blk + 2 <= blocks; blk += 2) {
    one(blk, 0);
    one(blk + 1, 1);
  }
  if (blk < blocks) one(blk, 0);
  for (int r = 0; r < N; ++r) out[r * out_stride] = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][0], acc[r][1]));
}

// Q4_K against bfloat16 activations: a weight is S_j * q - M_j (sub-block j of 32 values: S_j = d * scale_j and
// M_j = dmin * min_j, both exact in float32; q in 0..15, exact in bfloat16), so a sub-block's products sum to
// S_j * (q . x) - M_j * sum(x): the dot-product instruction gives q . x (exact products, added pairwise in
// float32), and sum(x) of each 32 activations is computed once a call (xsum, in a fixed order). The same
// weights as the float32 path, summed in another order; each row's arithmetic is its own.
template <int N>
void row_dot_q4_k_bf16(const uint8_t* row, const uint16_t* x, const float* xsum, int64_t cols, float* out,
                       int64_t out_stride) {
  static const __m512i table = small_ints_bf16_table(0);
  __m512 acc[N][2];
  __m256 low[N];
  for (int r = 0; r < N; ++r) {
    acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    low[r] = _mm256_setzero_ps();
  }
  const int64_t blocks = cols / QK_K, sums = cols / 32;
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const uint8_t* b = row + blk * 144;
    float sc[8], mn[8];
    k4_scales(b + 4, f16(b), f16(b + 2), sc, mn);
    const __m256 mins = _mm256_loadu_ps(mn);
#pragma GCC unroll 8
    for (int r = 0; r < N; ++r) low[r] = _mm256_fmadd_ps(mins, _mm256_loadu_ps(xsum + r * sums + blk * 8), low[r]);
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {  // 32 bytes: values 0..31 of sub-block 2c (low nibbles), of 2c + 1 (high)
      const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 16 + 32 * c));
      const __m256i lo = _mm256_and_si256(raw, _mm256_set1_epi8(15));
      const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), _mm256_set1_epi8(15));
      const __m512bh w0 = (__m512bh)_mm512_permutexvar_epi16(_mm512_cvtepu8_epi16(lo), table);
      const __m512bh w1 = (__m512bh)_mm512_permutexvar_epi16(_mm512_cvtepu8_epi16(hi), table);
      const __m512 s0 = _mm512_set1_ps(sc[2 * c]), s1 = _mm512_set1_ps(sc[2 * c + 1]);
#pragma GCC unroll 8
      for (int r = 0; r < N; ++r) {
        const uint16_t* xr = x + r * cols + blk * QK_K + 64 * c;
        const __m512bh x0 = (__m512bh)_mm512_loadu_si512(xr), x1 = (__m512bh)_mm512_loadu_si512(xr + 32);
        acc[r][0] = _mm512_fmadd_ps(s0, _mm512_dpbf16_ps(_mm512_setzero_ps(), w0, x0), acc[r][0]);
        acc[r][1] = _mm512_fmadd_ps(s1, _mm512_dpbf16_ps(_mm512_setzero_ps(), w1, x1), acc[r][1]);
      }
    }
  }
  for (int r = 0; r < N; ++r) {
    const __m128 l = _mm_add_ps(_mm256_castps256_ps128(low[r]), _mm256_extractf128_ps(low[r], 1));
    const float mins_total = (l[0] + l[2]) + (l[1] + l[3]);
    out[r * out_stride] = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][0], acc[r][1])) - mins_total;
  }
}

// Q6_K against bfloat16 activations: a weight is S * (q - 32) (S = d * scale of its 16 values, exact in float32;
// q - 32 in -32..31, exact in bfloat16, looked up from two 32-entry tables by the 6-bit code), so 32 values
// are one dot-product instruction, whose lanes 0-7 hold the first 16 values' pairs and 8-15 the next 16's:
// each half is scaled by its own S. The same weights as the float32 path, summed in another order.
template <int N>
void row_dot_q6_k_bf16(const uint8_t* row, const uint16_t* x, const float*, int64_t cols, float* out,
                       int64_t out_stride) {
  static const __m512i table_lo = small_ints_bf16_table(32), table_hi = small_ints_bf16_table(0);  // codes 0-31, 32-63
  __m512 acc[N][2];
  for (int r = 0; r < N; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  const __m256i low4 = _mm256_set1_epi8(15), low2 = _mm256_set1_epi8(3);
  const int64_t blocks = cols / QK_K;
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const uint8_t* b = row + blk * 210;
    // d * scale of each 16 values, all 16 at once (the same float multiplications as one at a time)
    const __m512 scales = _mm512_mul_ps(_mm512_set1_ps(f16(b + 208)), _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 192)))));
#pragma GCC unroll 2
    for (int half = 0; half < 2; ++half) {
      const __m256i ql0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 64 * half));
      const __m256i ql1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 64 * half + 32));
      const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 128 + 32 * half));
      const __m256i codes[4] = {  // values 128 half + 32 k + l for l < 32
          _mm256_or_si256(_mm256_and_si256(ql0, low4), _mm256_slli_epi16(_mm256_and_si256(qh, low2), 4)),
          _mm256_or_si256(_mm256_and_si256(ql1, low4),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), low2), 4)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), low2), 4)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), low2), 4))};
#pragma GCC unroll 4
      for (int k = 0; k < 4; ++k) {
        const __m512bh w = (__m512bh)_mm512_permutex2var_epi16(table_lo, _mm512_cvtepu8_epi16(codes[k]), table_hi);
        const int s = 8 * half + 2 * k;  // the scales of values 128 half + 32 k + 0..15 and + 16..31 (lanes 0-7, 8-15)
        const __m512 scale = _mm512_permutexvar_ps(
            _mm512_set_epi32(s + 1, s + 1, s + 1, s + 1, s + 1, s + 1, s + 1, s + 1, s, s, s, s, s, s, s, s), scales);
#pragma GCC unroll 8
        for (int r = 0; r < N; ++r) {
          const __m512bh xv = (__m512bh)_mm512_loadu_si512(x + r * cols + blk * QK_K + 128 * half + 32 * k);
          acc[r][k & 1] = _mm512_fmadd_ps(scale, _mm512_dpbf16_ps(_mm512_setzero_ps(), w, xv), acc[r][k & 1]);
        }
      }
    }
  }
  for (int r = 0; r < N; ++r) out[r * out_stride] = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][0], acc[r][1]));
}

// A row kernel against bfloat16 activations: N activation rows (xsum: their 32-value sums, where the kernel
// takes them) against one weight row.
using RowDotBf16 = void (*)(const uint8_t* row, const uint16_t* x, const float* xsum, int64_t cols, float* out,
                            int64_t out_stride);

// Activation rows that share one decoding of the weights in the bfloat16 kernels (a row's arithmetic is its own
// whatever the group: its accumulators are never shared).
constexpr int BF16_ROWS = 8;

// Output rows [first, first + count): each weight row against the n activation rows BF16_ROWS at a time (dot[k]
// takes k + 1 rows), the rows PREFETCH_ROWS on asked for ahead.
void rows_dot_bf16(const RowDotBf16 (&dot)[BF16_ROWS], const uint8_t* base, int64_t row_bytes, int64_t first,
                   int64_t count,
                   const uint16_t* x, const float* xsum, int64_t n, int64_t cols, float* out, int64_t stride) {
  const int64_t sums = cols / 32;
  for (int64_t o = first; o < first + count; ++o) {
    const uint8_t* row = base + o * row_bytes;
    if (o + PREFETCH_ROWS < first + count) prefetch_row(row + PREFETCH_ROWS * row_bytes, row_bytes);
    for (int64_t r0 = 0; r0 < n; r0 += BF16_ROWS)
      dot[std::min<int64_t>(BF16_ROWS, n - r0) - 1](row, x + r0 * cols, xsum ? xsum + r0 * sums : nullptr, cols,
                                            out + r0 * stride + o, stride);
  }
}

constexpr RowDotBf16 Q5_0_BF16[BF16_ROWS] = {row_dot_q5_0_bf16<1>, row_dot_q5_0_bf16<2>, row_dot_q5_0_bf16<3>,
                                             row_dot_q5_0_bf16<4>, row_dot_q5_0_bf16<5>, row_dot_q5_0_bf16<6>,
                                             row_dot_q5_0_bf16<7>, row_dot_q5_0_bf16<8>};
constexpr RowDotBf16 Q4_K_BF16[BF16_ROWS] = {row_dot_q4_k_bf16<1>, row_dot_q4_k_bf16<2>, row_dot_q4_k_bf16<3>,
                                             row_dot_q4_k_bf16<4>, row_dot_q4_k_bf16<5>, row_dot_q4_k_bf16<6>,
                                             row_dot_q4_k_bf16<7>, row_dot_q4_k_bf16<8>};
constexpr RowDotBf16 Q6_K_BF16[BF16_ROWS] = {row_dot_q6_k_bf16<1>, row_dot_q6_k_bf16<2>, row_dot_q6_k_bf16<3>,
                                             row_dot_q6_k_bf16<4>, row_dot_q6_k_bf16<5>, row_dot_q6_k_bf16<6>,
                                             row_dot_q6_k_bf16<7>, row_dot_q6_k_bf16<8>};
#endif

void dot_tile(int64_t type, const uint8_t* base, int64_t first, int64_t count, const float* x,
              const uint16_t* x_bf16, const float* xsum, int64_t n, int64_t cols, float* out, int64_t stride) {
  const Format fmt = format_of(type);
  const int64_t row_bytes = cols / fmt.values * fmt.bytes;
#ifdef CODEGEMMA_BF16_DOT
  if (type == Q5_0 && x_bf16 != nullptr)
    return rows_dot_bf16(Q5_0_BF16, base, row_bytes, first, count, x_bf16, xsum, n, cols, out, stride);
  if (type == Q4_K && x_bf16 != nullptr)
    return rows_dot_bf16(Q4_K_BF16, base, row_bytes, first, count, x_bf16, xsum, n, cols, out, stride);
  if (type == Q6_K && x_bf16 != nullptr)
    return rows_dot_bf16(Q6_K_BF16, base, row_bytes, first, count, x_bf16, xsum, n, cols, out, stride);
#else
  (void)x_bf16;
  (void)xsum;
#endif
  switch (type) {
    case Q8_0: return rows_dot<Q8_0F>(base, row_bytes, first, count, x, n, cols, out, stride);
    case Q4_0: return rows_dot<Q4_0F>(base, row_bytes, first, count, x, n, cols, out, stride);
    case Q4_1: return rows_dot<Q4_1F>(base, row_bytes, first, count, x, n, cols, out, stride);
    case Q5_0: return rows_dot<Q5_0F>(base, row_bytes, first, count, x, n, cols, out, stride);
    case Q5_1: return rows_dot<Q5_1F>(base, row_bytes, first, count, x, n, cols, out, stride);
    case Q4_K: return rows_dot<Q4_KF>(base, row_bytes, first, count, x, n, cols, out, stride);
    case Q5_K: return rows_dot<Q5_KF>(base, row_bytes, first, count, x, n, cols, out, stride);
    case Q6_K: return rows_dot<Q6_KF>(base, row_bytes, first, count, x, n, cols, out, stride);
    default:
      return rows_dot_buffered(Buffered{decoder_of(type), fmt.values, fmt.bytes}, base, row_bytes, first, count, x,
                               n, cols, out, stride);
  }
}

void check_weight(const at::Tensor& w, int64_t type, int64_t rows, int64_t cols) {
  TORCH_CHECK(w.device().is_cpu() && w.scalar_type() == at::kByte && w.is_contiguous(),
              "quantized weights: a contiguous CPU uint8 tensor");
  const Format fmt = format_of(type);
  TORCH_CHECK(cols % fmt.values == 0, "a row of ", cols, " values is not whole blocks of ", fmt.values);
  TORCH_CHECK(w.numel() == rows * (cols / fmt.values) * fmt.bytes, "quantized weights: ", w.numel(),
              " bytes cannot hold ", rows, " x ", cols, " values of ggml type ", type);
  TORCH_CHECK(cols % LANES == 0, "rows must be a multiple of ", LANES, " values");
}

// Row ids as one contiguous int64 tensor, each checked to be a row of a matrix of `rows` rows.
at::Tensor checked_ids(const at::Tensor& ids_in, int64_t rows) {
  at::Tensor ids = ids_in.to(at::kLong).contiguous().reshape({-1});
  TORCH_CHECK(ids.numel() == 0 || (ids.min().item<int64_t>() >= 0 && ids.max().item<int64_t>() < rows),
              "row ids out of range");
  return ids;
}

// f(t) for every tile t < n_tiles on ATen's threads, tiles handed out from a shared counter, not split in
// equal parts: a thread that the OS interrupts (on a busy machine) holds the others up by one tile at most.
template <class F>
void for_each_tile(int64_t n_tiles, F&& f) {
  std::atomic<int64_t> next{0};
  at::parallel_for(0, std::min<int64_t>(at::get_num_threads(), n_tiles), 1, [&](int64_t, int64_t) {
    for (int64_t t; (t = next.fetch_add(1, std::memory_order_relaxed)) < n_tiles;) f(t);
  });
}

// float32 copies and bfloat16 roundings done here rather than as ATen ops: a decoding step makes
// hundreds of these tiny conversions, and each ATen call costs more than the conversion itself.
at::Tensor to_f32(const at::Tensor& x) {
  if (x.scalar_type() == at::kFloat) return x.contiguous();
  const at::Tensor xc = x.contiguous();
  at::Tensor out = at::empty(xc.sizes(), xc.options().dtype(at::kFloat));
  const at::BFloat16* src = xc.data_ptr<at::BFloat16>();
  float* dst = out.data_ptr<float>();
  for (int64_t i = 0, n = xc.numel(); i < n; ++i) dst[i] = float(src[i]);
  return out;
}

at::Tensor to_bf16(const at::Tensor& x) {
  at::Tensor out = at::empty(x.sizes(), x.options().dtype(at::kBFloat16));
  const float* src = x.data_ptr<float>();
  at::BFloat16* dst = out.data_ptr<at::BFloat16>();
  for (int64_t i = 0, n = x.numel(); i < n; ++i) dst[i] = at::BFloat16(src[i]);  // nearest even, as .to()
  return out;
}

// Gemma's RMSNorm in float32: x * rsqrt(mean(x^2) + eps) * gain (gain = 1 + w), rounded once to x's dtype.
at::Tensor rms_norm(const at::Tensor& x_in, const at::Tensor& gain_in, double eps) {
  TORCH_CHECK(x_in.device().is_cpu() && gain_in.scalar_type() == at::kFloat, "rms_norm: CPU x, float32 gain");
  const int64_t d = x_in.size(-1);
  TORCH_CHECK(gain_in.numel() == d, "rms_norm: gain of ", gain_in.numel(), " values for rows of ", d);
  const at::Tensor x = to_f32(x_in), gain = gain_in.contiguous();
  at::Tensor out = at::empty(x.sizes(), x.options());
  const float* xp = x.data_ptr<float>();
  const float* g = gain.data_ptr<float>();
  float* o = out.data_ptr<float>();
  const int64_t rows = x.numel() / d;
  at::parallel_for(0, rows, 64, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* xr = xp + r * d;
      float* orow = o + r * d;
      float ss[16] = {};
      int64_t j = 0;
      for (; j + 16 <= d; j += 16)
        for (int l = 0; l < 16; ++l) ss[l] += xr[j + l] * xr[j + l];
      float sum = 0;
      for (int l = 0; l < 16; ++l) sum += ss[l];
      for (; j < d; ++j) sum += xr[j] * xr[j];
      const float scale = 1.0f / std::sqrt(sum / float(d) + float(eps));
      for (j = 0; j < d; ++j) orow[j] = (xr[j] * scale) * g[j];
    }
  });
  return x_in.scalar_type() == at::kBFloat16 ? to_bf16(out) : out;
}

// Split-halves RoPE of x (B, H, T, hd) by cos/sin (B, 1, T, hd), in float32, rounded once to x's dtype.
at::Tensor rope(const at::Tensor& x_in, const at::Tensor& cos_in, const at::Tensor& sin_in) {
  TORCH_CHECK(x_in.dim() == 4 && cos_in.dim() == 4 && sin_in.dim() == 4, "rope: (B, H, T, hd) and (B, 1, T, hd)");
  const at::Tensor x = to_f32(x_in), c = to_f32(cos_in), s = to_f32(sin_in);
  const int64_t B = x.size(0), H = x.size(1), T = x.size(2), hd = x.size(3), half = hd / 2;
  TORCH_CHECK(c.size(0) == B && c.size(2) == T && c.size(3) == hd && c.sizes() == s.sizes(), "rope: table shapes");
  at::Tensor out = at::empty(x.sizes(), x.options());
  const float* xp = x.data_ptr<float>();
  const float* cp = c.data_ptr<float>();
  const float* sp = s.data_ptr<float>();
  float* o = out.data_ptr<float>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t t = 0; t < T; ++t) {
        const float* xr = xp + ((b * H + h) * T + t) * hd;
        const float* cr = cp + (b * T + t) * hd;
        const float* sr = sp + (b * T + t) * hd;
        float* orow = o + ((b * H + h) * T + t) * hd;
        for (int64_t j = 0; j < half; ++j) orow[j] = xr[j] * cr[j] - xr[j + half] * sr[j];
        for (int64_t j = half; j < hd; ++j) orow[j] = xr[j] * cr[j] + xr[j - half] * sr[j];
      }
  return x_in.scalar_type() == at::kBFloat16 ? to_bf16(out) : out;
}

// exp(x) for x <= 0 (softmax after subtracting the maximum), to about 2 ulp (Cephes' expf polynomial): a
// form GCC vectorizes, where std::exp is one library call a value (most of a long attention's time).
inline float exp_nonpositive(float x) {
  x = std::max(x, -87.0f);
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round to nearest
  const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const uint32_t bits = uint32_t(int32_t(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return p * scale;
}

// Attention of single queries (decoding): q (B, H, 1, hd), keys and values (B, n_kv, S, hd) with the query
// heads of a KV head consecutive (MQA/GQA); keys [first, S) are attended. float32 inside (Gemma 2's
// soft-cap cap * tanh(s / cap) where softcap > 0), one rounding to q's dtype. A 16-bit batched matrix
// product or the fused CPU kernel costs 10 to 100 times more for one query.
// One query row: q (H, hd) float32 against keys/values [first, S) of batch row b of k/v (B, n_kv, *, hd),
// out (H, hd). The same arithmetic whether it runs alone (attend1) or beside other rows (attend_rows).
void attend_row(const float* q0_all, const at::Tensor& k, const at::Tensor& v, int64_t b, int64_t H, int64_t hd,
                int64_t S, int64_t first, double scale, double softcap, float* out_all) {
  const int64_t n_kv = k.size(1);
  const bool bf16 = k.scalar_type() == at::kBFloat16;
  const int64_t groups = H / n_kv;  // query heads sharing a KV head: each key and value is widened once for all
  std::vector<float> scores(groups * S), row(hd), top(groups), total(groups);
  for (int64_t g = 0; g < n_kv; ++g) {
    const float* q0 = q0_all + g * groups * hd;
    float* o0 = out_all + g * groups * hd;
    auto widen = [&](const at::Tensor& t, int64_t s) {
      const int64_t off = b * t.stride(0) + g * t.stride(1) + s * t.stride(2);
      if (bf16) {  // bfloat16 is float32's top half: a shift, which vectorizes
        const uint16_t* src = reinterpret_cast<const uint16_t*>(t.data_ptr<at::BFloat16>()) + off;
        uint32_t* dst = reinterpret_cast<uint32_t*>(row.data());
        for (int64_t j = 0; j < hd; ++j) dst[j] = uint32_t(src[j]) << 16;
      } else {
        std::memcpy(row.data(), t.data_ptr<float>() + off, hd * 4);
      }
    };
    std::fill(top.begin(), top.end(), -INFINITY);
    for (int64_t s = first; s < S; ++s) {
      widen(k, s);
      for (int64_t h = 0; h < groups; ++h) {
        const float* qr = q0 + h * hd;
        float acc[16] = {};
        int64_t j = 0;
        for (; j + 16 <= hd; j += 16)
          for (int l = 0; l < 16; ++l) acc[l] += qr[j + l] * row[j + l];
        float dot = 0;
        for (int l = 0; l < 16; ++l) dot += acc[l];
        for (; j < hd; ++j) dot += qr[j] * row[j];
        dot *= float(scale);
        if (softcap > 0) dot = float(softcap) * std::tanh(dot / float(softcap));
        scores[h * S + s] = dot;
        top[h] = std::max(top[h], dot);
      }
    }
    for (int64_t h = 0; h < groups; ++h) {
      float sum = 0;
      float* sc = scores.data() + h * S;
      for (int64_t s = first; s < S; ++s) sc[s] = exp_nonpositive(sc[s] - top[h]);
      for (int64_t s = first; s < S; ++s) sum += sc[s];
      total[h] = sum;
    }
    std::fill(o0, o0 + groups * hd, 0.0f);
    for (int64_t s = first; s < S; ++s) {
      widen(v, s);
      for (int64_t h = 0; h < groups; ++h) {
        const float p = scores[h * S + s] / total[h];
        float* o = o0 + h * hd;
        for (int64_t j = 0; j < hd; ++j) o[j] += p * row[j];
      }
    }
  }
}

at::Tensor attend1(const at::Tensor& q_in, const at::Tensor& k, const at::Tensor& v, double scale, int64_t first,
                   double softcap) {
  TORCH_CHECK(q_in.dim() == 4 && q_in.size(2) == 1 && k.dim() == 4 && k.sizes() == v.sizes(),
              "attend1: q (B, H, 1, hd), k and v (B, n_kv, S, hd)");
  TORCH_CHECK(k.scalar_type() == v.scalar_type() && k.stride(3) == 1 && v.stride(3) == 1, "attend1: k/v layout");
  const int64_t B = q_in.size(0), H = q_in.size(1), hd = q_in.size(3), n_kv = k.size(1), S = k.size(2);
  TORCH_CHECK(k.size(0) == B && k.size(3) == hd && H % n_kv == 0 && 0 <= first && first < S, "attend1: shapes");
  TORCH_CHECK(k.scalar_type() == at::kBFloat16 || k.scalar_type() == at::kFloat, "attend1: float32 or bfloat16 keys");
  const at::Tensor q = to_f32(q_in);
  at::Tensor out = at::empty({B, H, 1, hd}, q.options());
  for (int64_t b = 0; b < B; ++b)
    attend_row(q.data_ptr<float>() + b * H * hd, k, v, b, H, hd, S, first, scale, softcap,
               out.data_ptr<float>() + b * H * hd);
  return q_in.scalar_type() == at::kBFloat16 ? to_bf16(out) : out;
}

// Several single queries of a continuous batch at once: query i (row i of q (N, H, 1, hd)) attends slots
// [firsts[i], lengths[i]) of cache row rows[i] of k/v (R, n_kv, max, hd), whose keys are already written.
// Rows run on ATen's threads, each exactly as attend1 computes it.
at::Tensor attend_rows(const at::Tensor& q_in, const at::Tensor& k, const at::Tensor& v, at::IntArrayRef rows,
                       at::IntArrayRef lengths, at::IntArrayRef firsts, double scale, double softcap) {
  TORCH_CHECK(q_in.dim() == 4 && q_in.size(2) == 1 && k.dim() == 4 && k.sizes() == v.sizes(), "attend_rows: shapes");
  TORCH_CHECK(k.scalar_type() == v.scalar_type() && k.stride(3) == 1 && v.stride(3) == 1, "attend_rows: k/v layout");
  TORCH_CHECK(k.scalar_type() == at::kBFloat16 || k.scalar_type() == at::kFloat, "attend_rows: k/v dtype");
  const int64_t N = q_in.size(0), H = q_in.size(1), hd = q_in.size(3);
  TORCH_CHECK(int64_t(rows.size()) == N && int64_t(lengths.size()) == N && int64_t(firsts.size()) == N,
              "attend_rows: one row, length and first key a query");
  TORCH_CHECK(k.size(3) == hd && H % k.size(1) == 0, "attend_rows: head sizes");
  for (int64_t i = 0; i < N; ++i)
    TORCH_CHECK(0 <= rows[i] && rows[i] < k.size(0) && 0 <= firsts[i] && firsts[i] < lengths[i] &&
                lengths[i] <= k.size(2), "attend_rows: query ", i, " outside the cache");
  const at::Tensor q = to_f32(q_in);
  at::Tensor out = at::empty({N, H, 1, hd}, q.options());
  at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      attend_row(q.data_ptr<float>() + i * H * hd, k, v, rows[i], H, hd, lengths[i], firsts[i], scale, softcap,
                 out.data_ptr<float>() + i * H * hd);
  });
  return q_in.scalar_type() == at::kBFloat16 ? to_bf16(out) : out;
}

// x (N, cols) float32 or bfloat16; weights[i] the blocks of a (rows[i], cols) matrix of ggml type
// types[i]. Returns x @ W_i.T for each i: (N, rows[i]) float32, or x's dtype unless f32_out.
std::vector<at::Tensor> qgemv(const at::Tensor& x_in, at::TensorList weights, at::IntArrayRef types,
                              at::IntArrayRef rows, bool f32_out) {
  TORCH_CHECK(x_in.dim() == 2 && x_in.device().is_cpu(), "x: a (rows, features) CPU tensor");
  TORCH_CHECK(x_in.scalar_type() == at::kFloat || x_in.scalar_type() == at::kBFloat16, "x: float32 or bfloat16");
  TORCH_CHECK(weights.size() == types.size() && weights.size() == rows.size(), "one type and row count per weight");
  const int64_t n = x_in.size(0), cols = x_in.size(1);
  const at::Tensor x = to_f32(x_in);
  std::vector<at::Tensor> outs;
  // tiles of output rows across all weights, shared out over the threads
  struct Tile { int w; int64_t first, count; };
  std::vector<Tile> tiles;
  constexpr int64_t TILE = 64;
  for (size_t i = 0; i < weights.size(); ++i) {
    check_weight(weights[i], types[i], rows[i], cols);
    outs.push_back(at::empty({n, rows[i]}, x.options()));
    for (int64_t first = 0; first < rows[i]; first += TILE)
      tiles.push_back({int(i), first, std::min(TILE, rows[i] - first)});
  }
  const float* xp = x.data_ptr<float>();
  const at::Tensor x_bf16 = x_in.scalar_type() == at::kBFloat16 ? x_in.contiguous() : at::Tensor();
  const uint16_t* xb = x_bf16.defined() ? reinterpret_cast<const uint16_t*>(x_bf16.data_ptr<at::BFloat16>()) : nullptr;
  // the sum of each 32 activations of a row, for the kernels that take a block's minimum out of the sum (Q4_K)
  std::vector<float> xsum;
  if (xb != nullptr && std::find(types.begin(), types.end(), int64_t(Q4_K)) != types.end()) {
    xsum.resize(n * (cols / 32));
    for (int64_t i = 0; i < n * (cols / 32); ++i) {
      float t = 0;
      for (int j = 0; j < 32; ++j) t += xp[i * 32 + j];
      xsum[i] = t;
    }
  }
  for_each_tile(int64_t(tiles.size()), [&](int64_t t) {
    const Tile tile = tiles[t];
    dot_tile(types[tile.w], weights[tile.w].data_ptr<uint8_t>(), tile.first, tile.count, xp, xb,
             xsum.empty() ? nullptr : xsum.data(), n, cols, outs[tile.w].data_ptr<float>(), rows[tile.w]);
  });
  if (!f32_out && x_in.scalar_type() == at::kBFloat16)
    for (auto& o : outs) o = to_bf16(o);
  return outs;
}

// One decoder block for single tokens (decoding), the whole of model.Block's forward in one op: a step's
// hundreds of small PyTorch operations and their Python cost become 18 calls. The arithmetic is the
// unfused path's, op for op (the same functions, the same roundings to x's dtype between them), so a
// token's result is the one the separate ops give.
//
// x (N, D): token i belongs to cache row rows[i] at slot slots[i] and attends slots [firsts[i], slots[i]].
// weights: q, k, v, o, gate, up, down (GGML blocks). gains (float32, 1 + w): input, post-attention,
// pre- and post-feedforward (Gemma 2/3's sandwich norms; absent for Gemma 1), q and k norms (absent
// where the model has none). cos/sin (N, 1, 1, hd): each token's RoPE rows.
at::Tensor decode_block(const at::Tensor& x_in, at::TensorList w, at::IntArrayRef types, at::IntArrayRef wrows,
                        const c10::List<c10::optional<at::Tensor>>& gains, const at::Tensor& k_cache,
                        const at::Tensor& v_cache, at::IntArrayRef rows, at::IntArrayRef slots,
                        at::IntArrayRef firsts, const at::Tensor& cos, const at::Tensor& sin, int64_t n_heads,
                        int64_t n_kv, int64_t head_dim, double eps, double scale, double softcap) {
  TORCH_CHECK(w.size() == 7 && types.size() == 7 && wrows.size() == 7 && gains.size() == 6,
              "decode_block: seven weights (q, k, v, o, gate, up, down) and six gains");
  TORCH_CHECK(k_cache.is_contiguous() && v_cache.is_contiguous() && k_cache.sizes() == v_cache.sizes() &&
              k_cache.scalar_type() == x_in.scalar_type() && v_cache.scalar_type() == x_in.scalar_type(),
              "decode_block: contiguous caches in x's dtype");
  const int64_t D = x_in.size(-1), N = x_in.numel() / D;
  TORCH_CHECK(int64_t(rows.size()) == N && int64_t(slots.size()) == N && int64_t(firsts.size()) == N,
              "decode_block: one row, slot and first key a token");
  TORCH_CHECK(k_cache.dim() == 4 && k_cache.size(1) == n_kv && k_cache.size(3) == head_dim, "decode_block: cache shape");
  for (int64_t i = 0; i < N; ++i)
    TORCH_CHECK(0 <= rows[i] && rows[i] < k_cache.size(0) && 0 <= slots[i] && slots[i] < k_cache.size(2),
                "KV cache holds ", k_cache.size(2), " tokens; slot ", slots[i], " requested");
  auto gain = [&](int i) { return gains.get(i); };
  const bool sandwich = gain(2).has_value();
  const at::Tensor x = x_in.reshape({N, D});

  const at::Tensor h = rms_norm(x, *gain(0), eps);
  std::vector<at::Tensor> qkv = qgemv(h, w.slice(0, 3), types.slice(0, 3), wrows.slice(0, 3), false);
  at::Tensor q = qkv[0].view({N, 1, n_heads, head_dim}), k = qkv[1].view({N, 1, n_kv, head_dim});
  if (gain(4).has_value()) {
    q = rms_norm(q, *gain(4), eps);
    k = rms_norm(k, *gain(5), eps);
  }
  q = rope(q.transpose(1, 2), cos, sin);  // (N, H, 1, hd)
  k = rope(k.transpose(1, 2), cos, sin).contiguous();  // (N, n_kv, 1, hd)
  const at::Tensor v = qkv[2].contiguous();  // (N, n_kv * hd)
  const int64_t item = k_cache.element_size(), span = head_dim * item;
  const int64_t kv_stride = k_cache.stride(1) * item, row_stride = k_cache.stride(0) * item;
  uint8_t* kc = static_cast<uint8_t*>(k_cache.data_ptr());
  uint8_t* vc = static_cast<uint8_t*>(v_cache.data_ptr());
  std::vector<int64_t> lengths(N);
  for (int64_t i = 0; i < N; ++i) {
    const int64_t at = rows[i] * row_stride + slots[i] * span;
    for (int64_t g = 0; g < n_kv; ++g) {
      std::memcpy(kc + at + g * kv_stride, static_cast<const uint8_t*>(k.data_ptr()) + (i * n_kv + g) * span, span);
      std::memcpy(vc + at + g * kv_stride, static_cast<const uint8_t*>(v.data_ptr()) + (i * n_kv + g) * span, span);
    }
    lengths[i] = slots[i] + 1;
  }
  const at::Tensor y = attend_rows(q, k_cache, v_cache, rows, lengths, firsts, scale, softcap);
  const at::Tensor o = qgemv(y.reshape({N, n_heads * head_dim}), w.slice(3, 1), types.slice(3, 1),
                             wrows.slice(3, 1), false)[0];
  at::Tensor out = sandwich ? x + rms_norm(o, *gain(1), eps) : x + o;
  const at::Tensor h2 = rms_norm(out, *gain(sandwich ? 2 : 1), eps);
  std::vector<at::Tensor> gate_up = qgemv(h2, w.slice(4, 2), types.slice(4, 2), wrows.slice(4, 2), false);
  const at::Tensor act = at::gelu(gate_up[0], "tanh") * gate_up[1];
  const at::Tensor down = qgemv(act, w.slice(6, 1), types.slice(6, 1), wrows.slice(6, 1), false)[0];
  out = sandwich ? out + rms_norm(down, *gain(3), eps) : out + down;
  return out.view(x_in.sizes());
}

template <class Fmt>
void decode_row_vec(const uint8_t* row, int64_t cols, float* y) {
  for (int64_t blk = 0; blk < cols / Fmt::values; ++blk) {
    float* out = y + blk * Fmt::values;
    Fmt::block(row + blk * Fmt::bytes, [&](int g, f32x16 w) { std::memcpy(out + LANES * g, &w, 64); });
  }
}

// One row of a matrix to float32: the vector decoders where a format has one.
void decode_row(int64_t type, Decoder dec, Format fmt, const uint8_t* row, int64_t cols, float* y) {
  switch (type) {
    case Q8_0: return decode_row_vec<Q8_0F>(row, cols, y);
    case Q4_0: return decode_row_vec<Q4_0F>(row, cols, y);
    case Q4_1: return decode_row_vec<Q4_1F>(row, cols, y);
    case Q5_0: return decode_row_vec<Q5_0F>(row, cols, y);
    case Q5_1: return decode_row_vec<Q5_1F>(row, cols, y);
    case Q4_K: return decode_row_vec<Q4_KF>(row, cols, y);
    case Q5_K: return decode_row_vec<Q5_KF>(row, cols, y);
    case Q6_K: return decode_row_vec<Q6_KF>(row, cols, y);
    default:
      for (int64_t b = 0; b < cols / fmt.values; ++b) dec(row + b * fmt.bytes, y + b * fmt.values);
  }
}

// float32 to bfloat16, rounding to nearest even (as at::BFloat16 does for finite values; weights are finite)
void store_bf16(const float* y, int64_t n, uint16_t* out) {
  typedef uint16_t u16x16 __attribute__((vector_size(32)));
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    u32x16 bits;
    std::memcpy(&bits, y + j, 64);
    const u32x16 rounded = (bits + (((bits >> 16) & 1) + 0x7FFF)) >> 16;
    const u16x16 h = __builtin_convertvector(rounded, u16x16);
    std::memcpy(out + j, &h, 32);
  }
  for (; j < n; ++j) {
    const at::BFloat16 b(y[j]);
    std::memcpy(out + j, &b, 2);
  }
}

// Rows idp[i] (row i where idp is null) for i < n of a matrix of ggml type `type`, dequantized into the first
// n * cols values of out: float32, or bfloat16 (the float32 value rounded once).
void dequant_to(const at::Tensor& w, int64_t type, int64_t cols, const int64_t* idp, int64_t n, const at::Tensor& out) {
  const Format fmt = format_of(type);
  const Decoder dec = decoder_of(type);
  const int64_t row_bytes = cols / fmt.values * fmt.bytes;
  const bool bf16_out = out.scalar_type() == at::kBFloat16;
  const uint8_t* base = w.data_ptr<uint8_t>();
  at::parallel_for(0, n, 16, [&](int64_t begin, int64_t end) {
    std::vector<float> tmp(bf16_out ? cols : 0);
    for (int64_t i = begin; i < end; ++i) {
      const uint8_t* row = base + (idp ? idp[i] : i) * row_bytes;
      float* y = bf16_out ? tmp.data() : out.data_ptr<float>() + i * cols;
      decode_row(type, dec, fmt, row, cols, y);
      if (bf16_out) store_bf16(y, cols, reinterpret_cast<uint16_t*>(out.data_ptr<at::BFloat16>() + i * cols));
    }
  });
}

// Rows `ids` (or all rows when ids is None) of a (rows, cols) matrix of ggml type `type`, dequantized
// to float32 (or bfloat16: the float32 value rounded once).
at::Tensor dequant_rows(const at::Tensor& w, int64_t type, int64_t rows, int64_t cols,
                        const c10::optional<at::Tensor>& ids_in, bool bf16_out) {
  check_weight(w, type, rows, cols);
  const at::Tensor ids = ids_in.has_value() ? checked_ids(*ids_in, rows) : at::Tensor();
  const int64_t n = ids.defined() ? ids.numel() : rows;
  at::Tensor out = at::empty({n, cols}, at::TensorOptions().dtype(bf16_out ? at::kBFloat16 : at::kFloat));
  dequant_to(w, type, cols, ids.defined() ? ids.data_ptr<int64_t>() : nullptr, n, out);
  return out;
}

// The whole (rows, cols) matrix dequantized into the first rows * cols values of `out` (float32 or bfloat16,
// contiguous): a buffer the caller reuses for every projection of a prompt, where a new matrix-sized
// allocation each time scatters the heap (the peak memory of a long prefill).
void dequant_into(const at::Tensor& w, int64_t type, int64_t rows, int64_t cols, const at::Tensor& out) {
  check_weight(w, type, rows, cols);
  TORCH_CHECK(out.is_contiguous() && out.numel() >= rows * cols &&
              (out.scalar_type() == at::kFloat || out.scalar_type() == at::kBFloat16),
              "dequant_into: a contiguous float32 or bfloat16 buffer of at least ", rows * cols, " values");
  dequant_to(w, type, cols, nullptr, rows, out);
}

// Q8_0 packed for bfloat16 activations: the rows in groups of 16, each 32-value block of a group stored as the
// 16 rows' scales (f16, 32 bytes) and then, for each pair p of values (0..15), the 16 rows' values 2p and 2p + 1
// (row r's at bytes 2r and 2r + 1): 34 bytes a row and block, as in the file. One dot-product instruction
// multiplies a pair of activations (broadcast) with that pair of weights in 16 rows, so the 16 lanes are 16
// output rows, and a block's scales multiply the 16 rows' sums at once: a sixteenth of the row layout's scale
// multiplications, and a group's bytes are read in order (asked for PACK_PREFETCH blocks ahead). The same exact
// weights (d * q; q is exact in bfloat16), summed in another order; a row's result never depends on x's other
// rows. Used for the output head (GGUFEmbedding), the largest matrix of a decoding step.
constexpr int64_t PACK_ROWS = 16, PACK_BLOCK = PACK_ROWS * 34, PACK_PREFETCH = 16;

void check_packed(const at::Tensor& packed, int64_t rows, int64_t cols) {
  TORCH_CHECK(rows % PACK_ROWS == 0 && cols % 32 == 0, "a packed Q8_0 matrix has rows in 16s and columns in 32s");
  TORCH_CHECK(packed.scalar_type() == at::kByte && packed.is_contiguous() && packed.numel() == rows * cols / 32 * 34,
              "packed: ", rows * cols / 32 * 34, " contiguous bytes for ", rows, " x ", cols, " Q8_0 values");
}

// Rows [first, first + count) of the Q8_0 matrix w (rows, cols), multiples of 16, written to their place in packed.
void pack_q8_0(const at::Tensor& w, int64_t rows, int64_t cols, const at::Tensor& packed, int64_t first,
               int64_t count) {
  check_weight(w, Q8_0, rows, cols);
  check_packed(packed, rows, cols);
  TORCH_CHECK(first % PACK_ROWS == 0 && count % PACK_ROWS == 0 && first >= 0 && count >= 0 && first + count <= rows,
              "pack_q8_0: whole groups of 16 rows within the matrix");
  const int64_t blocks = cols / 32;
  const uint8_t* src = w.data_ptr<uint8_t>();
  uint8_t* dst = packed.data_ptr<uint8_t>();
  at::parallel_for(first / PACK_ROWS, (first + count) / PACK_ROWS, 16, [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g)
      for (int64_t b = 0; b < blocks; ++b) {
        uint8_t* d = dst + (g * blocks + b) * PACK_BLOCK;
        for (int r = 0; r < PACK_ROWS; ++r) {
          const uint8_t* s = src + ((g * PACK_ROWS + r) * blocks + b) * 34;
          std::memcpy(d + 2 * r, s, 2);
          for (int p = 0; p < 16; ++p) std::memcpy(d + 32 + 32 * p + 2 * r, s + 2 + 2 * p, 2);
        }
      }
  });
}

// Rows `ids` of a packed Q8_0 matrix: float32 d * q as the row layout gives them (or bfloat16, rounded once).
at::Tensor packed_rows(const at::Tensor& packed, int64_t rows, int64_t cols, const at::Tensor& ids_in, bool bf16_out) {
  check_packed(packed, rows, cols);
  const at::Tensor ids = checked_ids(ids_in, rows);
  const int64_t n = ids.numel(), blocks = cols / 32;
  at::Tensor out = at::empty({n, cols}, at::kFloat);
  const uint8_t* base = packed.data_ptr<uint8_t>();
  const int64_t* idp = ids.data_ptr<int64_t>();
  float* o = out.data_ptr<float>();
  at::parallel_for(0, n, 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t g = idp[i] / PACK_ROWS, r = idp[i] % PACK_ROWS;
      for (int64_t b = 0; b < blocks; ++b) {
        const uint8_t* blk = base + (g * blocks + b) * PACK_BLOCK;
        const float d = f16(blk + 2 * r);
        for (int j = 0; j < 32; ++j) o[i * cols + b * 32 + j] = d * float(int8_t(blk[32 + 32 * (j / 2) + 2 * r + j % 2]));
      }
    }
  });
  return bf16_out ? to_bf16(out) : out;
}

#ifdef CODEGEMMA_BF16_DOT
// N activation rows (bfloat16) against the 16 rows of one group; out[r * stride + k] for row k of the group.
template <int N>
void packed_group_dot(const uint8_t* group, const uint16_t* x, int64_t cols, float* out, int64_t stride) {
  const int64_t blocks = cols / 32;
  __m512 acc[N];
  for (int r = 0; r < N; ++r) acc[r] = _mm512_setzero_ps();
  for (int64_t b = 0; b < blocks; ++b) {
    const uint8_t* blk = group + b * PACK_BLOCK;
    for (int64_t l = 0; l < PACK_BLOCK; l += 64)
      _mm_prefetch(reinterpret_cast<const char*>(blk + PACK_PREFETCH * PACK_BLOCK + l), _MM_HINT_T0);
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk)));
    __m512 t[N][2];  // even and odd pairs: two chains of dependent dot products a row
    for (int r = 0; r < N; ++r) t[r][0] = t[r][1] = _mm512_setzero_ps();
#pragma GCC unroll 16
    for (int p = 0; p < 16; ++p) {
      const __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 32 + 32 * p));
      const __m128i hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 48 + 32 * p));
      const __m512bh w = _mm512_cvtne2ps_pbh(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(hi)),
                                             _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(lo)));  // exact small integers
#pragma GCC unroll 8
      for (int r = 0; r < N; ++r) {
        int32_t pair;
        std::memcpy(&pair, x + r * cols + b * 32 + 2 * p, 4);
        t[r][p & 1] = _mm512_dpbf16_ps(t[r][p & 1], w, (__m512bh)_mm512_set1_epi32(pair));
      }
    }
    for (int r = 0; r < N; ++r) acc[r] = _mm512_fmadd_ps(d, _mm512_add_ps(t[r][0], t[r][1]), acc[r]);
  }
  for (int r = 0; r < N; ++r) _mm512_storeu_ps(out + r * stride, acc[r]);
}

using PackedGroupDot = void (*)(const uint8_t*, const uint16_t*, int64_t, float*, int64_t);
constexpr PackedGroupDot PACKED_DOT[BF16_ROWS] = {packed_group_dot<1>, packed_group_dot<2>, packed_group_dot<3>,
                                                  packed_group_dot<4>, packed_group_dot<5>, packed_group_dot<6>,
                                                  packed_group_dot<7>, packed_group_dot<8>};
#endif

// x (n, cols) bfloat16 @ W.T for a packed Q8_0 W: (n, rows) float32.
at::Tensor packed_dot(const at::Tensor& x_in, const at::Tensor& packed, int64_t rows, int64_t cols) {
  check_packed(packed, rows, cols);
  TORCH_CHECK(x_in.dim() == 2 && x_in.size(1) == cols && x_in.scalar_type() == at::kBFloat16,
              "x: (rows, ", cols, ") bfloat16");
  const at::Tensor x = x_in.contiguous();
  const int64_t n = x.size(0);
  at::Tensor out = at::empty({n, rows}, at::kFloat);
#ifdef CODEGEMMA_BF16_DOT
  const uint16_t* xp = reinterpret_cast<const uint16_t*>(x.data_ptr<at::BFloat16>());
  const uint8_t* w = packed.data_ptr<uint8_t>();
  float* o = out.data_ptr<float>();
  const int64_t groups = rows / PACK_ROWS, group_bytes = cols / 32 * PACK_BLOCK, tile = 4;  // 64 rows a tile
  for_each_tile((groups + tile - 1) / tile, [&](int64_t t) {
    for (int64_t g = t * tile; g < std::min(groups, (t + 1) * tile); ++g)
      for (int64_t r0 = 0; r0 < n; r0 += BF16_ROWS)
        PACKED_DOT[std::min<int64_t>(BF16_ROWS, n - r0) - 1](w + g * group_bytes, xp + r0 * cols, cols,
                                                     o + r0 * rows + g * PACK_ROWS, rows);
  });
#else
  TORCH_CHECK(false, "packed_dot needs AVX512-BF16 (see bf16_dot)");
#endif
  return out;
}

// Whether this build has the bfloat16 dot-product kernels (AVX512-BF16): packed_dot, and the bfloat16 paths of
// Q5_0, Q4_K and Q6_K.
bool bf16_dot() {
#ifdef CODEGEMMA_BF16_DOT
  return true;
#else
  return false;
#endif
}

}  // namespace

TORCH_LIBRARY(codegemma, m) {
  m.def("qgemv(Tensor x, Tensor[] weights, int[] types, int[] rows, bool f32_out) -> Tensor[]");
  m.def("dequant_rows(Tensor w, int type, int rows, int cols, Tensor? ids, bool bf16_out) -> Tensor");
  m.def("dequant_into(Tensor w, int type, int rows, int cols, Tensor(a!) out) -> ()");
  m.def("rms_norm(Tensor x, Tensor gain, float eps) -> Tensor");
  m.def("rope(Tensor x, Tensor cos, Tensor sin) -> Tensor");
  m.def("attend1(Tensor q, Tensor k, Tensor v, float scale, int first, float softcap) -> Tensor");
  m.def("attend_rows(Tensor q, Tensor k, Tensor v, int[] rows, int[] lengths, int[] firsts, float scale, "
        "float softcap) -> Tensor");
  m.def("decode_block(Tensor x, Tensor[] weights, int[] types, int[] rows, Tensor?[] gains, Tensor(a!) k_cache, "
        "Tensor(b!) v_cache, int[] cache_rows, int[] slots, int[] firsts, Tensor cos, Tensor sin, int n_heads, "
        "int n_kv, int head_dim, float eps, float scale, float softcap) -> Tensor");
  m.def("pack_q8_0(Tensor w, int rows, int cols, Tensor(a!) packed, int first, int count) -> ()");
  m.def("packed_rows(Tensor packed, int rows, int cols, Tensor ids, bool bf16_out) -> Tensor");
  m.def("packed_dot(Tensor x, Tensor packed, int rows, int cols) -> Tensor");
  m.def("bf16_dot() -> bool", bf16_dot);
}

TORCH_LIBRARY_IMPL(codegemma, CPU, m) {
  m.impl("qgemv", qgemv);
  m.impl("dequant_rows", dequant_rows);
  m.impl("dequant_into", dequant_into);
  m.impl("rms_norm", rms_norm);
  m.impl("rope", rope);
  m.impl("attend1", attend1);
  m.impl("attend_rows", attend_rows);
  m.impl("decode_block", decode_block);
  m.impl("pack_q8_0", pack_q8_0);
  m.impl("packed_rows", packed_rows);
  m.impl("packed_dot", packed_dot);
}

