// Weight-only quantized products for KILN_WEIGHT_DTYPE (ADR 0020): out[M, N] (+)= a[M, K] · Wᵀ
// with W stored as int8 groups of 32 along K with one f32 scale each (Q8_0-like), or as
// bfloat16 bits. Activations are f32, or rounded to bfloat16 (KILN_ACTIVATION_DTYPE=bf16). Every
// product multiplies an activation by the exact weight the format stands for (scale · q, or the
// widened bf16), so a result differs from an f32 GEMM over the dequantized weights (and the
// rounded activations) by summation order only.
//
// Panel layout (packQuant writes it; nothing outside this file reads it): W's N rows are cut
// into panels of kPanel = 32 output columns, zero-padded past N, and K into Kp = ceil(K / 2)
// pairs, zero-padded past K. A panel stores, for each pair, its 32 columns' two weights side by
// side: element ((p·Kp + kp)·32 + c)·2 + t is W[p·32 + c, 2·kp + t], as int8 codes (with
// scales[(p·G + g)·32 + c] for the G groups of 32 along K) or bf16 bits. One pair of a panel is
// 64 values: the operand layout of AVX-512 BF16's pair dot product (vdpbf16ps), and cheap to
// split into each k's two 16-lane f32 vectors.
//
// A register tile of up to kMaxRows activation rows × 32 columns accumulates with a broadcast
// and multiply-adds per row and k, so each panel is read from memory once per call, whatever M.
// f32 multiply-adds: small M widens each pair in registers; from kWidenRows rows a panel is
// widened once into an f32 scratch panel that every row tile reuses (prefill). bf16 activations
// on a CPU with AVX-512 BF16 use vdpbf16ps (twice the multiply-adds of f32 per instruction):
// bf16 weights straight from the panel, int8 from a scratch panel of the codes as bf16 (exact),
// summed per group and then scaled. Up to kMaxRows rows on a CPU with AVX-512 VBMI, the codes are
// widened in registers by byte lookups instead (CodeLookup: the same bits, no scratch panel).
// Panels are split across the calling thread's OpenMP team (the one oneDNN uses) in runs of
// consecutive panels taken from a shared counter; while one int8 panel computes, the thread asks
// for the next one's lines (Prefetch), so DRAM reads and multiply-adds overlap. AVX-512 where
// the CPU has it (checked at run time), portable C++ otherwise.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#include <napi.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "huge-pages.h"
#include "napi-args.h"
#include "onednn.h"

namespace kiln {
namespace {

constexpr int64_t kGroup = 32;
constexpr int64_t kPairsPerGroup = kGroup / 2;
constexpr int64_t kPanel = 32;
constexpr int kMaxRows = 6;
// From this many activation rows int8 panels are widened once per call (see the header).
constexpr int64_t kWidenRows = 8;

bool hasAvx512() {
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl");
  return has;
}

bool hasBf16Dot() {
  static const bool has = hasAvx512() && __builtin_cpu_supports("avx512bf16");
  return has;
}

// AVX-512 VBMI's two-table byte permute (vpermi2b), which widens int8 codes to bf16 (CodeLookup).
bool hasByteLookup() {
  static const bool has = hasBf16Dot() && __builtin_cpu_supports("avx512vbmi");
  return has;
}

// The widest path products may take (quantIsa's argument): 3 pair dot products with int8 codes
// widened by byte lookups, 2 pair dot products, 1 AVX-512 multiply-adds, 0 portable C++. Tests
// lower it to run the narrower paths on a wide CPU.
std::atomic<int> maxIsa{3};

bool useAvx512() { return maxIsa.load() >= 1 && hasAvx512(); }
bool useBf16Dot() { return maxIsa.load() >= 2 && hasBf16Dot(); }
bool useByteLookup() { return maxIsa.load() >= 3 && hasByteLookup(); }

// Whether int8 products ask for their next panel ahead (Prefetch); quantPrefetch(false) turns it
// off, for side-by-side benchmarks.
std::atomic<bool> prefetchPanels{true};

// A product's operands. Exactly one of q (with scales) or bf16 is set, in the panel layout.
// Activation row i is a[i·lda, i·lda + 2·Kp) (zero past K), and the same as bf16 bits in abf
// when the product uses pair dot products.
struct QuantJob {
  const float* a;
  const uint16_t* abf;
  int64_t lda;
  const int8_t* q;
  const float* scales;
  const uint16_t* bf16;
  float* out;
  int64_t m, n, k, pairs, groups, panels;
  bool accumulate, avx, dot;
  bool lookup;  // up to kMaxRows rows, int8 codes widen to bf16 in registers by byte lookups
  bool prefetch;  // ask for the next int8 panel while computing one (Prefetch)
};

inline float bf16ToFloat(uint16_t bits) {
  const uint32_t b = static_cast<uint32_t>(bits) << 16;
  float f;
  __builtin_memcpy(&f, &b, 4);
  return f;
}

// x rounded to the nearest bfloat16, ties to even (weight-formats.ts f32ToBf16Bits).
inline uint16_t floatToBf16(float x) {
  uint32_t bits;
  __builtin_memcpy(&bits, &x, 4);
  if (x != x) return static_cast<uint16_t>((bits >> 16) | 0x40);
  return static_cast<uint16_t>((bits + 0x7fff + ((bits >> 16) & 1)) >> 16);
}

inline int64_t pairIndex(const QuantJob& job, int64_t p, int64_t kk, int64_t c) {
  return ((p * job.pairs + kk / 2) * kPanel + c) * 2 + kk % 2;
}

// The weight of panel p at (kk, c) as f32: scale · q or the widened bf16.
inline float weightAt(const QuantJob& job, int64_t p, int64_t kk, int64_t c) {
  const int64_t at = pairIndex(job, p, kk, c);
  if (job.q == nullptr) return bf16ToFloat(job.bf16[at]);
  return job.scales[(p * job.groups + kk / kGroup) * kPanel + c] * static_cast<float>(job.q[at]);
}

// Portable: panel p's columns for every activation row, summed in k order.
void panelScalar(const QuantJob& job, int64_t p) {
  const int64_t cols = std::min(kPanel, job.n - p * kPanel);
  for (int64_t i = 0; i < job.m; i++) {
    const float* a = job.a + i * job.lda;
    for (int64_t c = 0; c < cols; c++) {
      float s = 0;
      for (int64_t kk = 0; kk < job.k; kk++) s += a[kk] * weightAt(job, p, kk, c);
      float* o = job.out + i * job.n + p * kPanel + c;
      *o = job.accumulate ? *o + s : s;
    }
  }
}

#define KILN_AVX512 __attribute__((target("avx512f,avx512bw")))
#define KILN_AVX512_BF16 __attribute__((target("avx512f,avx512bw,avx512bf16")))

// A pair's weights as f32: e0/e1 the even k's columns 0-15/16-31, o0/o1 the odd k's.
struct PairWeights {
  __m512 e0, e1, o0, o1;
};

// 32 int8 pairs (16 columns) → the even and odd k's codes as f32.
KILN_AVX512 inline void splitInt8Pairs(const int8_t* at, __m512& even, __m512& odd) {
  const __m512i x = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i*)at));
  even = _mm512_cvtepi32_ps(_mm512_srai_epi32(_mm512_slli_epi32(x, 16), 16));
  odd = _mm512_cvtepi32_ps(_mm512_srai_epi32(x, 16));
}

// 32 bf16 pairs (16 columns) → the even and odd k's weights as f32 (exact).
KILN_AVX512 inline void splitBf16Pairs(const uint16_t* at, __m512& even, __m512& odd) {
  const __m512i x = _mm512_loadu_si512(at);
  even = _mm512_castsi512_ps(_mm512_slli_epi32(x, 16));
  odd = _mm512_castsi512_ps(_mm512_and_si512(x, _mm512_set1_epi32(static_cast<int>(0xffff0000u))));
}

// int8 codes → bf16 bits, 64 at a time, by byte lookups: AVX-512 VBMI's vpermi2b picks each
// byte from two registers (a 128-entry table) by an index's low 7 bits. bf16(|q|)'s low and high
// bytes come from two tables indexed by |q|, q's sign bit is ORed into the high byte, and two
// more permutes interleave the bytes into words in order. Exact for codes in [-127, 127]
// (packQuant refuses -128, whose |q| needs 8 bits), and the same bits as widenCodesBf16's
// conversions in 7 instructions instead of 18 and a round trip through memory. vpermi2b is inline
// assembly so that this inlines into tiles compiled for AVX-512 BF16 alone; only CPUs with VBMI
// run it (useByteLookup).
class CodeLookup {
 public:
  KILN_AVX512 static CodeLookup make() {
    const Tables& t = tables();
    CodeLookup lookup;
    lookup.lo0_ = _mm512_loadu_si512(t.lo);
    lookup.lo1_ = _mm512_loadu_si512(t.lo + 64);
    lookup.hi0_ = _mm512_loadu_si512(t.hi);
    lookup.hi1_ = _mm512_loadu_si512(t.hi + 64);
    lookup.first_ = _mm512_loadu_si512(t.first);
    lookup.second_ = _mm512_loadu_si512(t.second);
    return lookup;
  }

  // One pair step of a panel, 64 codes (32 columns × 2 k) at `at` → their bf16 bits in the
  // panel layout: columns 0-15 in w0, 16-31 in w1.
  KILN_AVX512 void widen(const int8_t* at, __m512i& w0, __m512i& w1) const {
    const __m512i q = _mm512_loadu_si512(at);
    const __m512i magnitude = _mm512_abs_epi8(q);
    const __m512i lo = permute2(magnitude, lo0_, lo1_);
    const __m512i hi = _mm512_ternarylogic_epi32(permute2(magnitude, hi0_, hi1_), q,
                                                 _mm512_set1_epi8(static_cast<char>(0x80)),
                                                 0xf8);  // hi | (q & sign)
    w0 = permute2(first_, lo, hi);
    w1 = permute2(second_, lo, hi);
  }

 private:
  struct Tables {
    uint8_t lo[128], hi[128];  // bf16(v)'s bytes for v in [0, 128)
    uint8_t first[64], second[64];  // (lo, hi) byte pairs of values 0-31 and 32-63
  };

  static const Tables& tables() {
    static const Tables t = [] {
      Tables t{};
      for (int v = 0; v < 128; v++) {
        const float f = static_cast<float>(v);
        uint32_t bits;
        __builtin_memcpy(&bits, &f, 4);  // a 7-bit integer: its bf16 is the top half, exactly
        t.lo[v] = static_cast<uint8_t>(bits >> 16);
        t.hi[v] = static_cast<uint8_t>(bits >> 24);
      }
      for (int j = 0; j < 32; j++) {
        t.first[2 * j] = static_cast<uint8_t>(j);
        t.first[2 * j + 1] = static_cast<uint8_t>(64 + j);
        t.second[2 * j] = static_cast<uint8_t>(32 + j);
        t.second[2 * j + 1] = static_cast<uint8_t>(96 + j);
      }
      return t;
    }();
    return t;
  }

  // Byte j of the result is (index_j < 64 ? t0 : t1)[index_j mod 64] (index bit 7 ignored).
  KILN_AVX512 static inline __attribute__((always_inline)) __m512i permute2(__m512i index,
                                                                           __m512i t0,
                                                                           __m512i t1) {
    asm("vpermi2b %2, %1, %0" : "+v"(index) : "v"(t0), "v"(t1));
    return index;
  }

  __m512i lo0_, lo1_, hi0_, hi1_, first_, second_;
};

// Where a pair dot product's weights come from: bf16 bits (a bf16 panel, or int8 codes widened
// into a scratch panel) or int8 codes widened in registers. load(kp) gives pair step kp's 64
// weights, columns 0-15 in w0 and 16-31 in w1.
struct Bf16Pairs {
  const uint16_t* bits;
  KILN_AVX512 void load(int64_t kp, __m512i& w0, __m512i& w1) const {
    w0 = _mm512_loadu_si512(bits + kp * 2 * kPanel);
    w1 = _mm512_loadu_si512(bits + kp * 2 * kPanel + kPanel);
  }
};

struct CodePairs {
  const int8_t* q;
  CodeLookup lookup;
  KILN_AVX512 void load(int64_t kp, __m512i& w0, __m512i& w1) const {
    lookup.widen(q + kp * 2 * kPanel, w0, w1);
  }
};

// The next int8 panel's codes and scales, asked for while the first row tile computes on this
// panel: its compute and the next panel's reads from DRAM then overlap instead of taking turns
// (after the codes are widened, a panel's tiles read only cache). One pair of an int8 panel is
// one 64-byte line, so pair step kp asks for line kp (into L2 and closer: prefetcht1, which
// measured a little faster than prefetcht0 here). bf16 panels are read by the tiles
// themselves, which the hardware prefetcher keeps up with (asking too measured no faster).
// `at` null asks for nothing.
struct Prefetch {
  const char* at = nullptr;  // the next panel's first pair
  const char* scales = nullptr;  // the next panel's scales
  inline void pair(int64_t kp) const {
    if (at != nullptr) __builtin_prefetch(at + kp * 2 * kPanel, 0, 2);
  }
  inline void group(int64_t g) const {
    if (at == nullptr) return;
    __builtin_prefetch(scales + g * kPanel * sizeof(float), 0, 2);
    __builtin_prefetch(scales + g * kPanel * sizeof(float) + 64, 0, 2);
  }
};

// Where a tile's weights of one pair come from. setGroup is called before each group of 32 k.
struct Int8Source {
  const int8_t* q = nullptr;  // the panel's first pair
  const float* scales = nullptr;
  __m512 s0, s1;
  KILN_AVX512 void setGroup(int64_t g) {
    s0 = _mm512_loadu_ps(scales + g * kPanel);
    s1 = _mm512_loadu_ps(scales + g * kPanel + 16);
  }
  KILN_AVX512 PairWeights load(int64_t kp) const {
    PairWeights w;
    splitInt8Pairs(q + kp * 2 * kPanel, w.e0, w.o0);
    splitInt8Pairs(q + kp * 2 * kPanel + kPanel, w.e1, w.o1);
    w.e0 = _mm512_mul_ps(w.e0, s0);
    w.o0 = _mm512_mul_ps(w.o0, s0);
    w.e1 = _mm512_mul_ps(w.e1, s1);
    w.o1 = _mm512_mul_ps(w.o1, s1);
    return w;
  }
};

struct Bf16Source {
  const uint16_t* bits;
  void setGroup(int64_t) {}
  KILN_AVX512 PairWeights load(int64_t kp) const {
    PairWeights w;
    splitBf16Pairs(bits + kp * 2 * kPanel, w.e0, w.o0);
    splitBf16Pairs(bits + kp * 2 * kPanel + kPanel, w.e1, w.o1);
    return w;
  }
};

// A panel already widened to f32, [2·Kp][32].
struct F32Source {
  const float* w;
  void setGroup(int64_t) {}
  KILN_AVX512 PairWeights load(int64_t kp) const {
    const float* at = w + kp * 2 * kPanel;
    return {_mm512_loadu_ps(at), _mm512_loadu_ps(at + 16), _mm512_loadu_ps(at + kPanel),
            _mm512_loadu_ps(at + kPanel + 16)};
  }
};

// Adds (or stores, without accumulate) a tile's accumulators into out's first `cols` columns.
template <int MR>
KILN_AVX512 inline void storeTile(const __m512* acc0, const __m512* acc1, float* out,
                                  int64_t ldo, int64_t cols, bool accumulate) {
  const __mmask16 m0 = cols >= 16 ? 0xffff : static_cast<__mmask16>((1u << cols) - 1);
  const __mmask16 m1 =
      cols >= 32 ? 0xffff : cols > 16 ? static_cast<__mmask16>((1u << (cols - 16)) - 1) : 0;
  for (int r = 0; r < MR; r++) {
    float* o = out + r * ldo;
    __m512 v0 = acc0[r], v1 = acc1[r];
    if (accumulate) {
      v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, o));
      v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, o + 16));
    }
    _mm512_mask_storeu_ps(o, m0, v0);
    _mm512_mask_storeu_ps(o + 16, m1, v1);
  }
}

// out rows [0, MR) × the panel's `cols` columns (+)= a rows [0, MR) · panel, f32 multiply-adds.
template <int MR, typename Source>
KILN_AVX512 void tileF32(const QuantJob& job, const float* a, Source src, float* out,
                         int64_t cols, const Prefetch& pf) {
  __m512 acc0[MR], acc1[MR];
  for (int r = 0; r < MR; r++) acc0[r] = acc1[r] = _mm512_setzero_ps();
  for (int64_t g = 0, start = 0; start < job.pairs; g++, start += kPairsPerGroup) {
    src.setGroup(g);
    pf.group(g);
    const int64_t end = std::min(start + kPairsPerGroup, job.pairs);
    for (int64_t kp = start; kp < end; kp++) {
      pf.pair(kp);
      const PairWeights w = src.load(kp);
      for (int r = 0; r < MR; r++) {
        const __m512 ae = _mm512_set1_ps(a[r * job.lda + 2 * kp]);
        const __m512 ao = _mm512_set1_ps(a[r * job.lda + 2 * kp + 1]);
        acc0[r] = _mm512_fmadd_ps(ae, w.e0, acc0[r]);
        acc1[r] = _mm512_fmadd_ps(ae, w.e1, acc1[r]);
        acc0[r] = _mm512_fmadd_ps(ao, w.o0, acc0[r]);
        acc1[r] = _mm512_fmadd_ps(ao, w.o1, acc1[r]);
      }
    }
  }
  storeTile<MR>(acc0, acc1, out, job.n, cols, job.accumulate);
}

// The same with bf16 activations and pair dot products over the bf16 weights `pairs` loads (see
// Bf16Pairs). With scales, each group of 32 k is summed apart and then scaled.
template <int MR, typename Pairs>
KILN_AVX512_BF16 void tileDot(const QuantJob& job, const uint16_t* a, const Pairs& pairs,
                              const float* scales, float* out, int64_t cols,
                              const Prefetch& pf) {
  __m512 acc0[MR], acc1[MR], sum0[MR], sum1[MR];
  for (int r = 0; r < MR; r++) acc0[r] = acc1[r] = _mm512_setzero_ps();
  for (int64_t g = 0, start = 0; start < job.pairs; g++, start += kPairsPerGroup) {
    for (int r = 0; r < MR; r++) sum0[r] = sum1[r] = _mm512_setzero_ps();
    pf.group(g);
    const int64_t end = std::min(start + kPairsPerGroup, job.pairs);
    for (int64_t kp = start; kp < end; kp++) {
      pf.pair(kp);
      __m512i w0, w1;
      pairs.load(kp, w0, w1);
      for (int r = 0; r < MR; r++) {
        int32_t pair;
        __builtin_memcpy(&pair, a + r * job.lda + 2 * kp, 4);
        const __m512bh ar = (__m512bh)_mm512_set1_epi32(pair);
        sum0[r] = _mm512_dpbf16_ps(sum0[r], ar, (__m512bh)w0);
        sum1[r] = _mm512_dpbf16_ps(sum1[r], ar, (__m512bh)w1);
      }
    }
    if (scales == nullptr) {
      for (int r = 0; r < MR; r++) {
        acc0[r] = _mm512_add_ps(acc0[r], sum0[r]);
        acc1[r] = _mm512_add_ps(acc1[r], sum1[r]);
      }
      continue;
    }
    const __m512 s0 = _mm512_loadu_ps(scales + g * kPanel);
    const __m512 s1 = _mm512_loadu_ps(scales + g * kPanel + 16);
    for (int r = 0; r < MR; r++) {
      acc0[r] = _mm512_fmadd_ps(sum0[r], s0, acc0[r]);
      acc1[r] = _mm512_fmadd_ps(sum1[r], s1, acc1[r]);
    }
  }
  storeTile<MR>(acc0, acc1, out, job.n, cols, job.accumulate);
}

// Runs tile<rows> for a tile of `rows` ≤ kMaxRows rows.
template <template <int> class Tile, typename... Args>
KILN_AVX512 inline void dispatchRows(int64_t rows, Args&&... args) {
  switch (rows) {
    case 1: Tile<1>::run(args...); break;
    case 2: Tile<2>::run(args...); break;
    case 3: Tile<3>::run(args...); break;
    case 4: Tile<4>::run(args...); break;
    case 5: Tile<5>::run(args...); break;
    default: Tile<6>::run(args...); break;
  }
}

template <typename Source>
struct F32Tile {
  template <int MR>
  struct Rows {
    KILN_AVX512 static void run(const QuantJob& job, const float* a, const Source& src, float* out,
                    int64_t cols, const Prefetch& pf) {
      tileF32<MR>(job, a, src, out, cols, pf);
    }
  };
};

template <typename Pairs>
struct DotTile {
  template <int MR>
  struct Rows {
    KILN_AVX512_BF16 static void run(const QuantJob& job, const uint16_t* a, const Pairs& pairs,
                    const float* scales, float* out, int64_t cols, const Prefetch& pf) {
      tileDot<MR>(job, a, pairs, scales, out, cols, pf);
    }
  };
};

// Every activation row against panel p, kMaxRows rows a tile; the first tile asks for pf.
template <typename Source>
KILN_AVX512 void panelRowsF32(const QuantJob& job, int64_t p, const Source& src,
                              const Prefetch& pf) {
  const int64_t cols = std::min(kPanel, job.n - p * kPanel);
  for (int64_t i = 0; i < job.m; i += kMaxRows) {
    dispatchRows<F32Tile<Source>::template Rows>(std::min<int64_t>(kMaxRows, job.m - i), job,
                                                 job.a + i * job.lda, src,
                                                 job.out + i * job.n + p * kPanel, cols,
                                                 i == 0 ? pf : Prefetch{});
  }
}

template <typename Pairs>
KILN_AVX512_BF16 void panelRowsDot(const QuantJob& job, int64_t p, const Pairs& pairs,
                                   const float* scales, const Prefetch& pf) {
  const int64_t cols = std::min(kPanel, job.n - p * kPanel);
  for (int64_t i = 0; i < job.m; i += kMaxRows) {
    dispatchRows<DotTile<Pairs>::template Rows>(
        std::min<int64_t>(kMaxRows, job.m - i), job, job.abf + i * job.lda, pairs, scales,
        job.out + i * job.n + p * kPanel, cols, i == 0 ? pf : Prefetch{});
  }
}

KILN_AVX512 Int8Source int8Panel(const QuantJob& job, int64_t p) {
  Int8Source src;
  src.q = job.q + p * job.pairs * 2 * kPanel;
  src.scales = job.scales + p * job.groups * kPanel;
  return src;
}

const uint16_t* bf16Panel(const QuantJob& job, int64_t p) {
  return job.bf16 + p * job.pairs * 2 * kPanel;
}

// Writes the panel src reads as f32 [2·Kp][32] into w.
template <typename Source>
KILN_AVX512 void widenPanelF32(const QuantJob& job, Source src, float* w) {
  for (int64_t g = 0, start = 0; start < job.pairs; g++, start += kPairsPerGroup) {
    src.setGroup(g);
    for (int64_t kp = start; kp < std::min(start + kPairsPerGroup, job.pairs); kp++) {
      const PairWeights v = src.load(kp);
      float* at = w + kp * 2 * kPanel;
      _mm512_storeu_ps(at, v.e0);
      _mm512_storeu_ps(at + 16, v.e1);
      _mm512_storeu_ps(at + kPanel, v.o0);
      _mm512_storeu_ps(at + kPanel + 16, v.o1);
    }
  }
}

// Writes int8 panel p's codes (unscaled) as bf16 pairs, the panel layout, into bits: sixteen
// consecutive codes (eight columns' pairs) widen to f32 and two such vectors pack into 32 bf16
// in order (exact: the codes are small integers).
KILN_AVX512_BF16 void widenCodesBf16(const QuantJob& job, int64_t p, uint16_t* bits) {
  const int8_t* q = job.q + p * job.pairs * 2 * kPanel;
  for (int64_t at = 0; at < job.pairs * 2 * kPanel; at += 2 * 16) {
    const __m512 lo =
        _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)(q + at))));
    const __m512 hi =
        _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)(q + at + 16))));
    _mm512_storeu_si512(bits + at, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
  }
}

// Per-thread scratch; each use has its own slot (the calling thread holds a call's activations
// while it widens panels too).
enum class Slot { kActivations, kPanel };

template <typename T, Slot slot>
T* threadScratch(int64_t len) {
  thread_local std::vector<T> scratch;
  if (scratch.size() < static_cast<size_t>(len)) scratch.resize(len);
  return scratch.data();
}

// What to ask for while panel p computes: int8 panel p + 1, when this thread computes it next.
Prefetch nextPanel(const QuantJob& job, int64_t p, int64_t end) {
  Prefetch pf;
  if (!job.prefetch || job.q == nullptr || p + 1 >= end) return pf;
  pf.at = reinterpret_cast<const char*>(job.q + (p + 1) * job.pairs * 2 * kPanel);
  pf.scales = reinterpret_cast<const char*>(job.scales + (p + 1) * job.groups * kPanel);
  return pf;
}

KILN_AVX512 void runPanelsAvx512(const QuantJob& job, int64_t begin, int64_t end) {
  const int64_t panelLen = job.pairs * 2 * kPanel;
  const CodeLookup lookup = job.lookup ? CodeLookup::make() : CodeLookup{};
  for (int64_t p = begin; p < end; p++) {
    const Prefetch pf = nextPanel(job, p, end);
    const float* scales = job.q == nullptr ? nullptr : job.scales + p * job.groups * kPanel;
    if (job.dot && job.q == nullptr) {
      panelRowsDot(job, p, Bf16Pairs{bf16Panel(job, p)}, nullptr, pf);
    } else if (job.dot && job.lookup && job.m <= kMaxRows) {
      // One row tile: the codes are widened in registers as it reads them.
      panelRowsDot(job, p, CodePairs{job.q + p * panelLen, lookup}, scales, pf);
    } else if (job.dot) {
      // Several row tiles: the codes are widened once into a scratch panel they all read (byte
      // lookups measured no faster here than the conversions: bench:forward --compare-lookup).
      uint16_t* bits = threadScratch<uint16_t, Slot::kPanel>(panelLen);
      widenCodesBf16(job, p, bits);
      panelRowsDot(job, p, Bf16Pairs{bits}, scales, pf);
    } else if (job.m >= kWidenRows) {
      float* w = threadScratch<float, Slot::kPanel>(panelLen);
      if (job.q != nullptr) {
        widenPanelF32(job, int8Panel(job, p), w);
      } else {
        widenPanelF32(job, Bf16Source{bf16Panel(job, p)}, w);
      }
      panelRowsF32(job, p, F32Source{w}, pf);
    } else if (job.q != nullptr) {
      panelRowsF32(job, p, int8Panel(job, p), pf);
    } else {
      panelRowsF32(job, p, Bf16Source{bf16Panel(job, p)}, pf);
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

// A call's panels, cut into runs that the team's threads take from a shared counter: a thread
// that loses its core to another process (the router, the gateway) takes fewer runs instead of
// holding the others at the end of the call.
struct TeamWork {
  const QuantJob& job;
  int64_t runLen;  // panels per run
  std::atomic<int64_t> next{0};
};

// Runs per thread: enough that the others can take over most of a stalled thread's share.
constexpr int64_t kRunsPerThread = 8;

void runTeamMember(void* data) {
  TeamWork& work = *static_cast<TeamWork*>(data);
  const int64_t panels = work.job.panels;
  for (;;) {
    const int64_t begin = work.next.fetch_add(work.runLen, std::memory_order_relaxed);
    if (begin >= panels) break;
    runPanels(work.job, begin, std::min(begin + work.runLen, panels));
  }
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
  QuantJob shape{};
  shape.n = dimArg(info, 2, "n");
  shape.k = dimArg(info, 3, "k");
  const int64_t n = shape.n, k = shape.k;
  shape.pairs = (k + 1) / 2;
  shape.groups = (k + kGroup - 1) / kGroup;
  const int64_t panels = panelsOf(n), len = panels * shape.pairs * 2 * kPanel;
  Napi::TypedArray wv = quantArg(info, 0, n * k);
  Napi::Object result = Napi::Object::New(env);
  if (wv.TypedArrayType() == napi_uint16_array) {
    const uint16_t* src = wv.As<Napi::Uint16Array>().Data();
    Napi::Uint16Array dst = Napi::Uint16Array::New(env, len, newHugePageBuffer(env, len * 2), 0);
    for (int64_t j = 0; j < n; j++) {
      for (int64_t kk = 0; kk < k; kk++) {
        dst.Data()[pairIndex(shape, j / kPanel, kk, j % kPanel)] = src[j * k + kk];
      }
    }
    result.Set("w", dst);
    result.Set("scales", env.Null());
    return result;
  }
  Napi::Float32Array scales = float32Arg(info, 1, "scales");
  requireLen(env, scales, n * shape.groups, "scales");
  const int8_t* src = wv.As<Napi::Int8Array>().Data();
  const int64_t scalesLen = panels * shape.groups * kPanel;
  Napi::Int8Array dst = Napi::Int8Array::New(env, len, newHugePageBuffer(env, len), 0);
  Napi::Float32Array dstScales =
      Napi::Float32Array::New(env, scalesLen, newHugePageBuffer(env, scalesLen * 4), 0);
  if (std::find(src, src + n * k, INT8_MIN) != src + n * k) {
    throw Napi::RangeError::New(env, "int8 codes must be in [-127, 127] (max|w| / 127 scales)");
  }
  for (int64_t j = 0; j < n; j++) {
    const int64_t p = j / kPanel, c = j % kPanel;
    for (int64_t kk = 0; kk < k; kk++) dst.Data()[pairIndex(shape, p, kk, c)] = src[j * k + kk];
    for (int64_t g = 0; g < shape.groups; g++) {
      dstScales.Data()[(p * shape.groups + g) * kPanel + c] = scales.Data()[j * shape.groups + g];
    }
  }
  result.Set("w", dst);
  result.Set("scales", dstScales);
  return result;
}

// One activation row of k values → lda values (zero past k): f32 (rounded to bf16 when `round`)
// into f32Out, and bf16 bits (to nearest, ties to even, NaN kept quiet) into bitsOut; either
// may be null. The scalar rounding of floatToBf16, sixteen lanes at a time.
__attribute__((target("avx512f,avx512bw,avx512vl"))) void convertRowAvx512(
    const float* src, int64_t k, int64_t lda, bool round, float* f32Out, uint16_t* bitsOut) {
  const __m512i one = _mm512_set1_epi32(1), half = _mm512_set1_epi32(0x7fff);
  const __m512i quiet = _mm512_set1_epi32(0x40);
  for (int64_t kk = 0; kk < lda; kk += 16) {
    const int64_t left = k - kk, room = lda - kk;
    const __mmask16 in = left <= 0 ? 0 : left >= 16 ? 0xffff : (1u << left) - 1;
    const __mmask16 out = room >= 16 ? 0xffff : (1u << room) - 1;
    const __m512 x = _mm512_maskz_loadu_ps(in, src + kk);
    const __m512i b = _mm512_castps_si512(x);
    const __m512i high = _mm512_srli_epi32(b, 16);
    __m512i r = _mm512_srli_epi32(
        _mm512_add_epi32(_mm512_add_epi32(b, half), _mm512_and_si512(high, one)), 16);
    r = _mm512_mask_mov_epi32(r, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q),
                              _mm512_or_si512(high, quiet));
    if (bitsOut != nullptr) _mm256_mask_storeu_epi16(bitsOut + kk, out, _mm512_cvtepi32_epi16(r));
    if (f32Out != nullptr) {
      _mm512_mask_storeu_ps(f32Out + kk, out,
                            round ? _mm512_castsi512_ps(_mm512_slli_epi32(r, 16)) : x);
    }
  }
}

void convertRowScalar(const float* src, int64_t k, int64_t lda, bool round, float* f32Out,
                      uint16_t* bitsOut) {
  for (int64_t kk = 0; kk < lda; kk++) {
    const float x = kk < k ? src[kk] : 0.0f;
    const uint16_t b = floatToBf16(x);
    if (f32Out != nullptr) f32Out[kk] = round ? bf16ToFloat(b) : x;
    if (bitsOut != nullptr) bitsOut[kk] = b;
  }
}

// Points job.a (or job.abf, for pair dot products) at the activations as the kernels read them:
// rows of 2·Kp values, zero past K, rounded to bf16 when bf16Activations. Copies only when the
// rows need padding or rounding.
void prepareActivations(QuantJob& job, const float* a, bool bf16Activations) {
  job.lda = 2 * job.pairs;
  if (!bf16Activations && job.lda == job.k) {
    job.a = a;
    return;
  }
  float* padded = job.dot ? nullptr : threadScratch<float, Slot::kActivations>(job.m * job.lda);
  uint16_t* bits = job.dot ? threadScratch<uint16_t, Slot::kActivations>(job.m * job.lda) : nullptr;
  for (int64_t i = 0; i < job.m; i++) {
    float* f32Row = padded == nullptr ? nullptr : padded + i * job.lda;
    uint16_t* bitsRow = bits == nullptr ? nullptr : bits + i * job.lda;
    if (job.avx) {
      convertRowAvx512(a + i * job.k, job.k, job.lda, bf16Activations, f32Row, bitsRow);
    } else {
      convertRowScalar(a + i * job.k, job.k, job.lda, bf16Activations, f32Row, bitsRow);
    }
  }
  job.a = padded;
  job.abf = bits;
}

// matmulQuant(a, w, scales, out, m, n, k, accumulate, numThreads, bf16Activations): w and scales
// as packQuant returned them for this n and k. bf16Activations rounds a to bf16 first (to
// nearest, ties to even) and, where the CPU has AVX-512 BF16, uses pair dot products. Panels are
// split across the calling thread's OpenMP team (numThreads 0 keeps its size).
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
  const bool bf16Activations = info[9].ToBoolean().Value();
  requireLen(env, a, job.m * job.k, "a");
  requireLen(env, out, job.m * job.n, "out");
  job.out = out.Data();
  job.prefetch = prefetchPanels.load();
  job.avx = useAvx512();
  job.panels = panelsOf(job.n);
  job.pairs = (job.k + 1) / 2;
  job.groups = (job.k + kGroup - 1) / kGroup;
  Napi::TypedArray wv = quantArg(info, 1, job.panels * job.pairs * 2 * kPanel);
  int64_t bytes = job.panels * job.pairs * 2 * kPanel;
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
  job.lookup = bf16Activations && job.q != nullptr && useByteLookup();
  job.dot = bf16Activations && useBf16Dot() &&
            (job.q == nullptr || job.lookup || job.m >= kWidenRows);
  prepareActivations(job, a.Data(), bf16Activations);
  setNumThreads(static_cast<int>(numThreads));
  const int team = bytes >= kMinParallelBytes ? onednn().ompGetMaxThreads() : 1;
  if (team > 1) {
    TeamWork work{job, std::max<int64_t>(1, job.panels / (team * kRunsPerThread))};
    onednn().gompParallel(runTeamMember, &work, static_cast<unsigned>(team), 0);
  } else {
    runPanels(job, 0, job.panels);
  }
  return env.Undefined();
}

// "avx512-bf16" (pair dot products for bf16 activations), "avx512" or "scalar".
// With an argument ("avx512-bf16", "avx512" or "scalar") first caps the paths later products
// take at it (for tests of the narrower paths).
Napi::Value QuantIsa(const Napi::CallbackInfo& info) {
  if (info.Length() > 0 && info[0].IsString()) {
    const std::string isa = info[0].As<Napi::String>().Utf8Value();
    if (isa != "avx512-vbmi" && isa != "avx512-bf16" && isa != "avx512" && isa != "scalar") {
      throw Napi::RangeError::New(info.Env(),
                                  "quantIsa: avx512-vbmi, avx512-bf16, avx512 or scalar");
    }
    maxIsa.store(isa == "avx512-vbmi" ? 3 : isa == "avx512-bf16" ? 2 : isa == "avx512" ? 1 : 0);
  }
  return Napi::String::New(info.Env(), useByteLookup() ? "avx512-vbmi"
                                       : useBf16Dot()  ? "avx512-bf16"
                                       : useAvx512()   ? "avx512"
                                                       : "scalar");
}

// quantPrefetch(on?) → whether int8 products ask for their next panel ahead; with a boolean,
// first sets it (bench:forward --compare-prefetch compares both in one run).
Napi::Value QuantPrefetch(const Napi::CallbackInfo& info) {
  if (info.Length() > 0 && info[0].IsBoolean()) prefetchPanels.store(info[0].As<Napi::Boolean>());
  return Napi::Boolean::New(info.Env(), prefetchPanels.load());
}

}  // namespace

void registerQuantMatmul(Napi::Env env, Napi::Object exports) {
  exports.Set("packQuant", Napi::Function::New(env, PackQuant, "packQuant"));
  exports.Set("matmulQuant", Napi::Function::New(env, MatmulQuant, "matmulQuant"));
  exports.Set("quantIsa", Napi::Function::New(env, QuantIsa, "quantIsa"));
  exports.Set("quantPrefetch", Napi::Function::New(env, QuantPrefetch, "quantPrefetch"));
}

}  // namespace kiln
