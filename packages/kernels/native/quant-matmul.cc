// Weight-only quantized products for KILN_WEIGHT_DTYPE (ADR 0020): out[M, N] (+)= a[M, K] · Wᵀ
// with W stored as int8 groups of 32 along K with one f32 scale each (Q8_0-like), or as
// bfloat16 bits. Activations stay f32. Single-threaded, weight row outer so one row is read from
// memory once per call and reused from L1 for every activation row. AVX-512 where the CPU has
// it (checked at run time), portable C++ otherwise; both sum in the same per-group order
// within a vector lane, so results match the TypeScript reference to rounding only.
#include <immintrin.h>
#include <napi.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "napi-args.h"

namespace kiln {
namespace {

constexpr int64_t kGroup = 32;

bool hasAvx512() {
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
  return has;
}

__attribute__((target("avx512f,avx512bw"))) float dotInt8Avx512(const float* a, const int8_t* q,
                                                                const float* scales, int64_t k) {
  __m512 acc = _mm512_setzero_ps();
  int64_t full = k / kGroup;
  for (int64_t g = 0; g < full; g++) {
    const int64_t p = g * kGroup;
    __m512 w0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)(q + p))));
    __m512 w1 =
        _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)(q + p + 16))));
    __m512 s = _mm512_fmadd_ps(_mm512_loadu_ps(a + p + 16), w1,
                               _mm512_mul_ps(_mm512_loadu_ps(a + p), w0));
    acc = _mm512_fmadd_ps(s, _mm512_set1_ps(scales[g]), acc);
  }
  float sum = _mm512_reduce_add_ps(acc);
  if (full * kGroup < k) {
    float s = 0;
    for (int64_t p = full * kGroup; p < k; p++) s += a[p] * static_cast<float>(q[p]);
    sum += s * scales[full];
  }
  return sum;
}

float dotInt8Scalar(const float* a, const int8_t* q, const float* scales, int64_t k) {
  float sum = 0;
  for (int64_t start = 0, g = 0; start < k; start += kGroup, g++) {
    float s = 0;
    for (int64_t p = start; p < std::min(start + kGroup, k); p++) s += a[p] * static_cast<float>(q[p]);
    sum += s * scales[g];
  }
  return sum;
}

__attribute__((target("avx512f,avx512bw"))) float dotBf16Avx512(const float* a, const uint16_t* w,
                                                                int64_t k) {
  __m512 acc = _mm512_setzero_ps();
  int64_t p = 0;
  for (; p + 16 <= k; p += 16) {
    __m512i bits = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)(w + p)));
    __m512 wf = _mm512_castsi512_ps(_mm512_slli_epi32(bits, 16));
    acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + p), wf, acc);
  }
  float sum = _mm512_reduce_add_ps(acc);
  for (; p < k; p++) {
    uint32_t b = static_cast<uint32_t>(w[p]) << 16;
    float f;
    __builtin_memcpy(&f, &b, 4);
    sum += a[p] * f;
  }
  return sum;
}

float dotBf16Scalar(const float* a, const uint16_t* w, int64_t k) {
  float sum = 0;
  for (int64_t p = 0; p < k; p++) {
    uint32_t b = static_cast<uint32_t>(w[p]) << 16;
    float f;
    __builtin_memcpy(&f, &b, 4);
    sum += a[p] * f;
  }
  return sum;
}

// matmulQuant(a, w, scales, out, m, n, k, accumulate): w is an Int8Array [N, K] with scales a
// Float32Array [N, ceil(K / 32)], or a Uint16Array [N, K] of bf16 bits with scales null.
Napi::Value MatmulQuant(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Float32Array a = float32Arg(info, 0, "a");
  Napi::Float32Array out = float32Arg(info, 3, "out");
  const int64_t m = dimArg(info, 4, "m"), n = dimArg(info, 5, "n"), k = dimArg(info, 6, "k");
  const bool accumulate = info[7].ToBoolean().Value();
  requireLen(env, a, m * k, "a");
  requireLen(env, out, m * n, "out");
  Napi::Value wv = info[1];
  if (!wv.IsTypedArray()) throw Napi::TypeError::New(env, "w must be an Int8Array or Uint16Array");
  const napi_typedarray_type type = wv.As<Napi::TypedArray>().TypedArrayType();
  const bool avx = hasAvx512();
  float* o = out.Data();
  const float* ad = a.Data();
  if (type == napi_int8_array) {
    Napi::Int8Array w = wv.As<Napi::Int8Array>();
    Napi::Float32Array scales = float32Arg(info, 2, "scales");
    const int64_t groups = (k + kGroup - 1) / kGroup;
    requireLen(env, w, n * k, "w");
    requireLen(env, scales, n * groups, "scales");
    for (int64_t j = 0; j < n; j++) {
      const int8_t* q = w.Data() + j * k;
      const float* sc = scales.Data() + j * groups;
      for (int64_t i = 0; i < m; i++) {
        float s = avx ? dotInt8Avx512(ad + i * k, q, sc, k) : dotInt8Scalar(ad + i * k, q, sc, k);
        o[i * n + j] = accumulate ? o[i * n + j] + s : s;
      }
    }
  } else if (type == napi_uint16_array) {
    Napi::Uint16Array w = wv.As<Napi::Uint16Array>();
    requireLen(env, w, n * k, "w");
    for (int64_t j = 0; j < n; j++) {
      const uint16_t* row = w.Data() + j * k;
      for (int64_t i = 0; i < m; i++) {
        float s = avx ? dotBf16Avx512(ad + i * k, row, k) : dotBf16Scalar(ad + i * k, row, k);
        o[i * n + j] = accumulate ? o[i * n + j] + s : s;
      }
    }
  } else {
    throw Napi::TypeError::New(env, "w must be an Int8Array or Uint16Array");
  }
  return env.Undefined();
}

Napi::Value QuantIsa(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), hasAvx512() ? "avx512" : "scalar");
}

}  // namespace

void registerQuantMatmul(Napi::Env env, Napi::Object exports) {
  exports.Set("matmulQuant", Napi::Function::New(env, MatmulQuant, "matmulQuant"));
  exports.Set("quantIsa", Napi::Function::New(env, QuantIsa, "quantIsa"));
}

}  // namespace kiln
