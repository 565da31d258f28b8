// Weight-only quantized products for KILN_WEIGHT_DTYPE (ADR 0020): out[M, N] (+)= a[M, K] · Wᵀ
// with W stored as int8 groups of 32 along K with one f32 scale each (Q8_0-like), or as
// bfloat16 bits. Activations stay f32. Weight row outer so one row is read from
// memory once per call and reused from L1 for every activation row, on the calling thread's
// OpenMP team (the one oneDNN uses). AVX-512 where the CPU has
// it (checked at run time), portable C++ otherwise; both sum in the same per-group order
// within a vector lane, so results match the TypeScript reference to rounding only.
#include <immintrin.h>
#include <napi.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "napi-args.h"
#include "onednn.h"

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

// Four activation rows at once (rows a0 + r·k): each weight group is widened once and used
// four times, so batched steps convert a quarter as often. Sums match the one-row kernels.
__attribute__((target("avx512f,avx512bw"))) void dotInt8x4Avx512(const float* a, int64_t k,
                                                                 const int8_t* q,
                                                                 const float* scales,
                                                                 float* sums) {
  __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                   _mm512_setzero_ps()};
  const int64_t full = k / kGroup;
  for (int64_t g = 0; g < full; g++) {
    const int64_t p = g * kGroup;
    __m512 w0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)(q + p))));
    __m512 w1 =
        _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)(q + p + 16))));
    __m512 d = _mm512_set1_ps(scales[g]);
    for (int r = 0; r < 4; r++) {
      const float* ar = a + r * k + p;
      __m512 s = _mm512_fmadd_ps(_mm512_loadu_ps(ar + 16), w1,
                                 _mm512_mul_ps(_mm512_loadu_ps(ar), w0));
      acc[r] = _mm512_fmadd_ps(s, d, acc[r]);
    }
  }
  for (int r = 0; r < 4; r++) {
    float sum = _mm512_reduce_add_ps(acc[r]);
    if (full * kGroup < k) {
      float s = 0;
      for (int64_t p = full * kGroup; p < k; p++) s += a[r * k + p] * static_cast<float>(q[p]);
      sum += s * scales[full];
    }
    sums[r] = sum;
  }
}

__attribute__((target("avx512f,avx512bw"))) void dotBf16x4Avx512(const float* a, int64_t k,
                                                                 const uint16_t* w,
                                                                 float* sums) {
  __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                   _mm512_setzero_ps()};
  int64_t p = 0;
  for (; p + 16 <= k; p += 16) {
    __m512i bits = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)(w + p)));
    __m512 wf = _mm512_castsi512_ps(_mm512_slli_epi32(bits, 16));
    for (int r = 0; r < 4; r++) acc[r] = _mm512_fmadd_ps(_mm512_loadu_ps(a + r * k + p), wf, acc[r]);
  }
  for (int r = 0; r < 4; r++) {
    float sum = _mm512_reduce_add_ps(acc[r]);
    for (int64_t t = p; t < k; t++) {
      uint32_t b = static_cast<uint32_t>(w[t]) << 16;
      float f;
      __builtin_memcpy(&f, &b, 4);
      sum += a[r * k + t] * f;
    }
    sums[r] = sum;
  }
}

// One call's product; each team member takes a contiguous slice of the N weight rows.
struct QuantJob {
  const float* a;
  const int8_t* q;       // int8 weights, or null
  const float* scales;   // with q
  const uint16_t* bf16;  // bf16 weights, or null
  float* out;
  int64_t m, n, k, groups;
  bool accumulate, avx;
};

void runRows(const QuantJob& job, int64_t begin, int64_t end) {
  const int64_t k = job.k;
  for (int64_t j = begin; j < end; j++) {
    int64_t i = 0;
    for (; job.avx && i + 4 <= job.m; i += 4) {
      float sums[4];
      if (job.q != nullptr) {
        dotInt8x4Avx512(job.a + i * k, k, job.q + j * k, job.scales + j * job.groups, sums);
      } else {
        dotBf16x4Avx512(job.a + i * k, k, job.bf16 + j * k, sums);
      }
      for (int r = 0; r < 4; r++) {
        float* o = job.out + (i + r) * job.n + j;
        *o = job.accumulate ? *o + sums[r] : sums[r];
      }
    }
    for (; i < job.m; i++) {
      const float* a = job.a + i * k;
      float s;
      if (job.q != nullptr) {
        const int8_t* q = job.q + j * k;
        const float* sc = job.scales + j * job.groups;
        s = job.avx ? dotInt8Avx512(a, q, sc, k) : dotInt8Scalar(a, q, sc, k);
      } else {
        const uint16_t* w = job.bf16 + j * k;
        s = job.avx ? dotBf16Avx512(a, w, k) : dotBf16Scalar(a, w, k);
      }
      float* o = job.out + i * job.n + j;
      *o = job.accumulate ? *o + s : s;
    }
  }
}

void runTeamMember(void* data) {
  const QuantJob& job = *static_cast<const QuantJob*>(data);
  const int64_t team = onednn().ompGetNumThreads();
  const int64_t me = onednn().ompGetThreadNum();
  runRows(job, job.n * me / team, job.n * (me + 1) / team);
}

// Below this many weight bytes a call runs on the calling thread alone.
constexpr int64_t kMinParallelBytes = 1 << 16;

// matmulQuant(a, w, scales, out, m, n, k, accumulate, numThreads): w is an Int8Array [N, K]
// with scales a Float32Array [N, ceil(K / 32)], or a Uint16Array [N, K] of bf16 bits with
// scales null. Rows of W are split across the calling thread's OpenMP team (numThreads 0 keeps
// its size).
Napi::Value MatmulQuant(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Float32Array a = float32Arg(info, 0, "a");
  Napi::Float32Array out = float32Arg(info, 3, "out");
  QuantJob job{};
  job.m = dimArg(info, 4, "m");
  job.n = dimArg(info, 5, "n");
  job.k = dimArg(info, 6, "k");
  job.accumulate = info[7].ToBoolean().Value();
  const int64_t numThreads = dimArg(info, 8, "numThreads");
  requireLen(env, a, job.m * job.k, "a");
  requireLen(env, out, job.m * job.n, "out");
  job.a = a.Data();
  job.out = out.Data();
  job.avx = hasAvx512();
  Napi::Value wv = info[1];
  const napi_typedarray_type type =
      wv.IsTypedArray() ? wv.As<Napi::TypedArray>().TypedArrayType() : napi_float32_array;
  int64_t bytes = 0;
  if (type == napi_int8_array) {
    Napi::Int8Array w = wv.As<Napi::Int8Array>();
    Napi::Float32Array scales = float32Arg(info, 2, "scales");
    job.groups = (job.k + kGroup - 1) / kGroup;
    requireLen(env, w, job.n * job.k, "w");
    requireLen(env, scales, job.n * job.groups, "scales");
    job.q = w.Data();
    job.scales = scales.Data();
    bytes = job.n * job.k;
  } else if (type == napi_uint16_array) {
    Napi::Uint16Array w = wv.As<Napi::Uint16Array>();
    requireLen(env, w, job.n * job.k, "w");
    job.bf16 = w.Data();
    bytes = 2 * job.n * job.k;
  } else {
    throw Napi::TypeError::New(env, "w must be an Int8Array or Uint16Array");
  }
  setNumThreads(static_cast<int>(numThreads));
  const int team = bytes >= kMinParallelBytes ? onednn().ompGetMaxThreads() : 1;
  if (team > 1) {
    onednn().gompParallel(runTeamMember, &job, static_cast<unsigned>(team), 0);
  } else {
    runRows(job, 0, job.n);
  }
  return env.Undefined();
}

// dequantizeWeights(w, scales, out, n, k): out [N, K] f32 = the weights w stands for (int8
// groups times their scale, or bf16 widened). Large-M products use it with oneDNN's sgemm,
// where compute, not weight reads, is the bound.
Napi::Value DequantizeWeights(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Float32Array out = float32Arg(info, 2, "out");
  const int64_t n = dimArg(info, 3, "n"), k = dimArg(info, 4, "k");
  requireLen(env, out, n * k, "out");
  float* o = out.Data();
  Napi::Value wv = info[0];
  const napi_typedarray_type type =
      wv.IsTypedArray() ? wv.As<Napi::TypedArray>().TypedArrayType() : napi_float32_array;
  if (type == napi_int8_array) {
    Napi::Int8Array w = wv.As<Napi::Int8Array>();
    Napi::Float32Array scales = float32Arg(info, 1, "scales");
    const int64_t groups = (k + kGroup - 1) / kGroup;
    requireLen(env, w, n * k, "w");
    requireLen(env, scales, n * groups, "scales");
    for (int64_t j = 0; j < n; j++) {
      for (int64_t p = 0; p < k; p++) {
        o[j * k + p] = scales.Data()[j * groups + p / kGroup] * static_cast<float>(w.Data()[j * k + p]);
      }
    }
  } else if (type == napi_uint16_array) {
    Napi::Uint16Array w = wv.As<Napi::Uint16Array>();
    requireLen(env, w, n * k, "w");
    for (int64_t t = 0; t < n * k; t++) {
      uint32_t b = static_cast<uint32_t>(w.Data()[t]) << 16;
      __builtin_memcpy(o + t, &b, 4);
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
  exports.Set("dequantizeWeights", Napi::Function::New(env, DequantizeWeights, "dequantizeWeights"));
  exports.Set("quantIsa", Napi::Function::New(env, QuantIsa, "quantIsa"));
}

}  // namespace kiln
