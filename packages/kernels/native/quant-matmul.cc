// Weight-only quantized products for KILN_WEIGHT_DTYPE (ADR 0020): out[M, N] (+)= a[M, K] · Wᵀ
// with W stored as int8 groups of 32 along K with one f32 scale each (Q8_0-like), or as
// bfloat16 bits. Activations stay f32, and every product is an f32 multiply-add of an
// activation by the exact weight the format stands for (scale · q, or the widened bf16), so a
// result differs from an f32 GEMM over the dequantized weights by summation order only.
//
// Panel layout (packQuant writes it; nothing outside this file reads it): W's N rows are cut
// into panels of kPanel = 32 output columns, zero-padded past N. A panel stores, for each k,
// its 32 weights side by side: int8 q[(p·K + k)·32 + c], scales[(p·G + g)·32 + c] (G groups of
// 32 along K per row); bf16 bits[(p·K + k)·32 + c]. One k of a panel is two 16-lane vectors,
// so a register tile of up to kMaxRows activation rows × 32 columns accumulates with one
// broadcast and two multiply-adds per row and k, and each panel is read from memory once per
// call, whatever M is. Small M widens each k's weights in registers; from kWidenRows rows a
// panel is widened once into an f32 scratch panel that every row tile reuses (prefill).
// Panels are split across the calling thread's OpenMP team (the one oneDNN uses). AVX-512 where
// the CPU has it (checked at run time), portable C++ otherwise.
// GCC 12 reports its own intrinsics' "undefined" vectors as maybe-uninitialized once inlined.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#include <napi.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "napi-args.h"
#include "onednn.h"

namespace kiln {
namespace {

constexpr int64_t kGroup = 32;
constexpr int64_t kPanel = 32;
constexpr int kMaxRows = 6;
// From this many activation rows a panel is widened to f32 once per call (see the header).
constexpr int64_t kWidenRows = 8;

bool hasAvx512() {
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
  return has;
}

// A product's operands: exactly one of q (with scales) or bf16 is set, in the panel layout.
struct QuantJob {
  const float* a;
  const int8_t* q;
  const float* scales;
  const uint16_t* bf16;
  float* out;
  int64_t m, n, k, groups, panels;
  bool accumulate, avx;
};

inline float bf16ToFloat(uint16_t bits) {
  const uint32_t b = static_cast<uint32_t>(bits) << 16;
  float f;
  __builtin_memcpy(&f, &b, 4);
  return f;
}

// The weight of panel p at (kk, c) as f32: scale · q or the widened bf16.
inline float weightAt(const QuantJob& job, int64_t p, int64_t kk, int64_t c) {
  const int64_t at = (p * job.k + kk) * kPanel + c;
  if (job.q == nullptr) return bf16ToFloat(job.bf16[at]);
  return job.scales[(p * job.groups + kk / kGroup) * kPanel + c] * static_cast<float>(job.q[at]);
}

// Portable: panel p's columns for every activation row, summed in k order.
void panelScalar(const QuantJob& job, int64_t p) {
  const int64_t cols = std::min(kPanel, job.n - p * kPanel);
  for (int64_t i = 0; i < job.m; i++) {
    const float* a = job.a + i * job.k;
    for (int64_t c = 0; c < cols; c++) {
      float s = 0;
      for (int64_t kk = 0; kk < job.k; kk++) s += a[kk] * weightAt(job, p, kk, c);
      float* o = job.out + i * job.n + p * kPanel + c;
      *o = job.accumulate ? *o + s : s;
    }
  }
}

// Where a tile's 32 weights of one k come from. setGroup is called before each group of 32 k.
struct Int8Source {
  const int8_t* q;  // the panel's first k
  const float* scales;
  __m512 s0, s1;
  __attribute__((target("avx512f,avx512bw"))) void setGroup(int64_t g) {
    s0 = _mm512_loadu_ps(scales + g * kPanel);
    s1 = _mm512_loadu_ps(scales + g * kPanel + 16);
  }
  __attribute__((target("avx512f,avx512bw"))) void load(int64_t kk, __m512& w0, __m512& w1) const {
    const int8_t* at = q + kk * kPanel;
    w0 = _mm512_mul_ps(
        _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)at))), s0);
    w1 = _mm512_mul_ps(
        _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)(at + 16)))), s1);
  }
};

__attribute__((target("avx512f,avx512bw"))) inline __m512 widenBf16(const uint16_t* at) {
  return _mm512_castsi512_ps(
      _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)at)), 16));
}

struct Bf16Source {
  const uint16_t* bits;
  void setGroup(int64_t) {}
  __attribute__((target("avx512f,avx512bw"))) void load(int64_t kk, __m512& w0, __m512& w1) const {
    w0 = widenBf16(bits + kk * kPanel);
    w1 = widenBf16(bits + kk * kPanel + 16);
  }
};

// A panel already widened to f32, [K][32].
struct F32Source {
  const float* w;
  void setGroup(int64_t) {}
  __attribute__((target("avx512f,avx512bw"))) void load(int64_t kk, __m512& w0, __m512& w1) const {
    w0 = _mm512_loadu_ps(w + kk * kPanel);
    w1 = _mm512_loadu_ps(w + kk * kPanel + 16);
  }
};

// out rows [0, MR) × the panel's `cols` columns (+)= a rows [0, MR) · panel.
template <int MR, typename Source>
__attribute__((target("avx512f,avx512bw"))) void tile(const float* a, int64_t k, Source src,
                                                      float* out, int64_t ldo, int64_t cols,
                                                      bool accumulate) {
  __m512 acc0[MR], acc1[MR];
  for (int r = 0; r < MR; r++) acc0[r] = acc1[r] = _mm512_setzero_ps();
  for (int64_t g = 0, start = 0; start < k; g++, start += kGroup) {
    src.setGroup(g);
    const int64_t end = std::min(start + kGroup, k);
    for (int64_t kk = start; kk < end; kk++) {
      __m512 w0, w1;
      src.load(kk, w0, w1);
      for (int r = 0; r < MR; r++) {
        const __m512 ar = _mm512_set1_ps(a[r * k + kk]);
        acc0[r] = _mm512_fmadd_ps(ar, w0, acc0[r]);
        acc1[r] = _mm512_fmadd_ps(ar, w1, acc1[r]);
      }
    }
  }
  const __mmask16 m0 = cols >= 16 ? 0xffff : static_cast<__mmask16>((1u << cols) - 1);
  const __mmask16 m1 =
      cols >= 32 ? 0xffff : cols > 16 ? static_cast<__mmask16>((1u << (cols - 16)) - 1) : 0;
  for (int r = 0; r < MR; r++) {
    float* o = out + r * ldo;
    if (accumulate) {
      acc0[r] = _mm512_add_ps(acc0[r], _mm512_maskz_loadu_ps(m0, o));
      acc1[r] = _mm512_add_ps(acc1[r], _mm512_maskz_loadu_ps(m1, o + 16));
    }
    _mm512_mask_storeu_ps(o, m0, acc0[r]);
    _mm512_mask_storeu_ps(o + 16, m1, acc1[r]);
  }
}

// Every activation row against one panel, kMaxRows rows a tile.
template <typename Source>
__attribute__((target("avx512f,avx512bw"))) void panelRows(const QuantJob& job, int64_t p, const Source& src) {
  const int64_t cols = std::min(kPanel, job.n - p * kPanel);
  float* out = job.out + p * kPanel;
  const int64_t k = job.k, ldo = job.n;
  for (int64_t i = 0; i < job.m; i += kMaxRows) {
    const float* a = job.a + i * k;
    float* o = out + i * ldo;
    switch (std::min<int64_t>(kMaxRows, job.m - i)) {
      case 1: tile<1>(a, k, src, o, ldo, cols, job.accumulate); break;
      case 2: tile<2>(a, k, src, o, ldo, cols, job.accumulate); break;
      case 3: tile<3>(a, k, src, o, ldo, cols, job.accumulate); break;
      case 4: tile<4>(a, k, src, o, ldo, cols, job.accumulate); break;
      case 5: tile<5>(a, k, src, o, ldo, cols, job.accumulate); break;
      default: tile<6>(a, k, src, o, ldo, cols, job.accumulate); break;
    }
  }
}

// Writes panel p's weights as f32 [K][32] into w.
__attribute__((target("avx512f,avx512bw"))) void widenPanel(const QuantJob& job, int64_t p,
                                                            float* w) {
  if (job.q != nullptr) {
    Int8Source src{job.q + p * job.k * kPanel, job.scales + p * job.groups * kPanel, {}, {}};
    for (int64_t g = 0, start = 0; start < job.k; g++, start += kGroup) {
      src.setGroup(g);
      for (int64_t kk = start; kk < std::min(start + kGroup, job.k); kk++) {
        __m512 w0, w1;
        src.load(kk, w0, w1);
        _mm512_storeu_ps(w + kk * kPanel, w0);
        _mm512_storeu_ps(w + kk * kPanel + 16, w1);
      }
    }
    return;
  }
  const Bf16Source src{job.bf16 + p * job.k * kPanel};
  for (int64_t kk = 0; kk < job.k; kk++) {
    __m512 w0, w1;
    src.load(kk, w0, w1);
    _mm512_storeu_ps(w + kk * kPanel, w0);
    _mm512_storeu_ps(w + kk * kPanel + 16, w1);
  }
}

__attribute__((target("avx512f,avx512bw"))) void runPanelsAvx512(const QuantJob& job,
                                                                 int64_t begin, int64_t end) {
  if (job.m >= kWidenRows) {
    thread_local std::vector<float> wide;
    if (wide.size() < static_cast<size_t>(job.k * kPanel)) wide.resize(job.k * kPanel);
    for (int64_t p = begin; p < end; p++) {
      widenPanel(job, p, wide.data());
      panelRows(job, p, F32Source{wide.data()});
    }
    return;
  }
  for (int64_t p = begin; p < end; p++) {
    if (job.q != nullptr) {
      panelRows(job, p,
                Int8Source{job.q + p * job.k * kPanel, job.scales + p * job.groups * kPanel, {}, {}});
    } else {
      panelRows(job, p, Bf16Source{job.bf16 + p * job.k * kPanel});
    }
  }
}

void runPanels(const QuantJob& job, int64_t begin, int64_t end) {
  if (job.avx) {
    runPanelsAvx512(job, begin, end);
    return;
  }
  for (int64_t p = begin; p < end; p++) panelScalar(job, p);
}

void runTeamMember(void* data) {
  const QuantJob& job = *static_cast<const QuantJob*>(data);
  const int64_t team = onednn().ompGetNumThreads();
  const int64_t me = onednn().ompGetThreadNum();
  runPanels(job, job.panels * me / team, job.panels * (me + 1) / team);
}

// Below this many weight bytes a call runs on the calling thread alone.
constexpr int64_t kMinParallelBytes = 1 << 16;

int64_t panelsOf(int64_t n) { return (n + kPanel - 1) / kPanel; }

// Reads argument i as packQuant's weights: an Int8Array (int8) or Uint16Array (bf16) holding
// `len` elements.
Napi::TypedArray quantArg(const Napi::CallbackInfo& info, size_t i, int64_t len) {
  Napi::Value v = info[i];
  const napi_typedarray_type type =
      v.IsTypedArray() ? v.As<Napi::TypedArray>().TypedArrayType() : napi_float32_array;
  if (type != napi_int8_array && type != napi_uint16_array) {
    throw Napi::TypeError::New(info.Env(), "w must be an Int8Array or Uint16Array");
  }
  Napi::TypedArray arr = v.As<Napi::TypedArray>();
  if (static_cast<int64_t>(arr.ElementLength()) < len) {
    throw Napi::RangeError::New(info.Env(), "w is shorter than its shape");
  }
  return arr;
}

// packQuant(w, scales, n, k) → { w, scales }: w an Int8Array [N, K] with scales a Float32Array
// [N, ceil(K / 32)] (row-major, weight-formats.ts), or a Uint16Array [N, K] of bf16 bits with
// scales null; returns new arrays of the same types in the panel layout (header).
Napi::Value PackQuant(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t n = dimArg(info, 2, "n"), k = dimArg(info, 3, "k");
  const int64_t panels = panelsOf(n), groups = (k + kGroup - 1) / kGroup;
  Napi::TypedArray wv = quantArg(info, 0, n * k);
  Napi::Object result = Napi::Object::New(env);
  if (wv.TypedArrayType() == napi_uint16_array) {
    const uint16_t* src = wv.As<Napi::Uint16Array>().Data();
    Napi::Uint16Array dst = Napi::Uint16Array::New(env, panels * k * kPanel);
    std::fill_n(dst.Data(), dst.ElementLength(), 0);
    for (int64_t j = 0; j < n; j++) {
      for (int64_t kk = 0; kk < k; kk++) {
        dst.Data()[((j / kPanel) * k + kk) * kPanel + j % kPanel] = src[j * k + kk];
      }
    }
    result.Set("w", dst);
    result.Set("scales", env.Null());
    return result;
  }
  Napi::Float32Array scales = float32Arg(info, 1, "scales");
  requireLen(env, scales, n * groups, "scales");
  const int8_t* src = wv.As<Napi::Int8Array>().Data();
  Napi::Int8Array dst = Napi::Int8Array::New(env, panels * k * kPanel);
  Napi::Float32Array dstScales = Napi::Float32Array::New(env, panels * groups * kPanel);
  std::fill_n(dst.Data(), dst.ElementLength(), 0);
  std::fill_n(dstScales.Data(), dstScales.ElementLength(), 0.0f);
  for (int64_t j = 0; j < n; j++) {
    const int64_t p = j / kPanel, c = j % kPanel;
    for (int64_t kk = 0; kk < k; kk++) dst.Data()[(p * k + kk) * kPanel + c] = src[j * k + kk];
    for (int64_t g = 0; g < groups; g++) {
      dstScales.Data()[(p * groups + g) * kPanel + c] = scales.Data()[j * groups + g];
    }
  }
  result.Set("w", dst);
  result.Set("scales", dstScales);
  return result;
}

// matmulQuant(a, w, scales, out, m, n, k, accumulate, numThreads): w and scales as packQuant
// returned them for this n and k. Panels are split across the calling thread's OpenMP team
// (numThreads 0 keeps its size).
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
  job.panels = panelsOf(job.n);
  job.groups = (job.k + kGroup - 1) / kGroup;
  Napi::TypedArray wv = quantArg(info, 1, job.panels * job.k * kPanel);
  int64_t bytes = job.panels * job.k * kPanel;
  if (wv.TypedArrayType() == napi_int8_array) {
    Napi::Float32Array scales = float32Arg(info, 2, "scales");
    requireLen(env, scales, job.panels * job.groups * kPanel, "scales");
    job.q = wv.As<Napi::Int8Array>().Data();
    job.scales = scales.Data();
  } else {
    job.bf16 = wv.As<Napi::Uint16Array>().Data();
    bytes *= 2;
  }
  if (job.m == 0 || job.n == 0) return env.Undefined();
  setNumThreads(static_cast<int>(numThreads));
  const int team = bytes >= kMinParallelBytes ? onednn().ompGetMaxThreads() : 1;
  if (team > 1) {
    onednn().gompParallel(runTeamMember, &job, static_cast<unsigned>(team), 0);
  } else {
    runPanels(job, 0, job.panels);
  }
  return env.Undefined();
}

Napi::Value QuantIsa(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), hasAvx512() ? "avx512" : "scalar");
}

}  // namespace

void registerQuantMatmul(Napi::Env env, Napi::Object exports) {
  exports.Set("packQuant", Napi::Function::New(env, PackQuant, "packQuant"));
  exports.Set("matmulQuant", Napi::Function::New(env, MatmulQuant, "matmulQuant"));
  exports.Set("quantIsa", Napi::Function::New(env, QuantIsa, "quantIsa"));
}

}  // namespace kiln
