// The addon's own f32 GEMM (ADR 0022): no oneDNN, no OpenMP, so it ships prebuilt
// (prebuilds/linux-x64/kiln_tier.node) and runs on any x86-64 Linux with Node's libstdc++.
//
//   packWeights(w, n, k) → handle   w [N,K] copied into panels of kPanel rows, k-major
//   matmulPacked(a, handle, out, m, accumulate, numThreads)   out[M,N] = a[M,K]·wᵀ (+ out)
//   info() → { library: "native", isa: "avx512" | "avx2" | "scalar", maxThreads }
//   rmsNorm, siluMul, applyRope, writeKv   native/elementwise.cc's row kernels (ADR 0026: the
//                                          TypeScript ones were ~40% of the tier's prefill)
//   pagedAttention                         native/attention.cc on this addon's thread pool
//   sampleRow                              native/sampling.cc
//
// Kernels: one register tile of kRows rows × kPanel (32) columns per inner loop, compiled three
// times (AVX-512F, AVX2+FMA, plain C++) with target attributes and chosen once at load time by
// __builtin_cpu_supports, so the build needs no -march and runs everywhere. Threads: panels are
// split across a small pool of std::threads (tier-pool.h), the calling thread taking a share.
#include <immintrin.h>
#include <napi.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "napi-args.h"
#include "tier-pool.h"

namespace kiln {
namespace {

constexpr int64_t kPanel = 32;  // weights rows (output columns) per panel

struct TierPacked {
  int64_t n = 0;
  int64_t k = 0;
  int64_t numPanels = 0;
  std::unique_ptr<float[], void (*)(void*)> data{nullptr, std::free};
};

// One panel: for each p in [0,K) the kPanel weights w[j0+c, p] (zero past N).
void packPanel(const float* w, int64_t n, int64_t k, int64_t panel, float* dst) {
  int64_t j0 = panel * kPanel;
  for (int64_t c = 0; c < kPanel; c++) {
    int64_t j = j0 + c;
    for (int64_t p = 0; p < k; p++) dst[p * kPanel + c] = j < n ? w[j * k + p] : 0.0f;
  }
}

// Stores a kPanel-wide row of results, keeping only the valid columns.
inline void storeRow(const float* acc, float* out, int64_t cols, bool isAccumulate) {
  for (int64_t c = 0; c < cols; c++) out[c] = isAccumulate ? out[c] + acc[c] : acc[c];
}

template <int R>
__attribute__((target("avx512f"))) void tileAvx512Rows(const float* a, int64_t lda,
                                                       const float* panel, int64_t k, float* out,
                                                       int64_t ldo, int64_t cols,
                                                       bool isAccumulate) {
  __m512 acc[R][2];
  for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (int64_t p = 0; p < k; p++) {
    __m512 w0 = _mm512_loadu_ps(panel + p * kPanel);
    __m512 w1 = _mm512_loadu_ps(panel + p * kPanel + 16);
    for (int r = 0; r < R; r++) {
      __m512 x = _mm512_set1_ps(a[r * lda + p]);
      acc[r][0] = _mm512_fmadd_ps(x, w0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(x, w1, acc[r][1]);
    }
  }
  alignas(64) float buf[kPanel];
  for (int r = 0; r < R; r++) {
    _mm512_store_ps(buf, acc[r][0]);
    _mm512_store_ps(buf + 16, acc[r][1]);
    storeRow(buf, out + r * ldo, cols, isAccumulate);
  }
}

// Up to 6 rows × 32 columns: 12 accumulators, 2 weight loads and 6 broadcasts per 12 FMAs.
__attribute__((target("avx512f"))) void tileAvx512(const float* a, int64_t lda, const float* panel,
                                                   int64_t k, int64_t rows, float* out,
                                                   int64_t ldo, int64_t cols, bool isAccumulate) {
  switch (rows) {
    case 1: return tileAvx512Rows<1>(a, lda, panel, k, out, ldo, cols, isAccumulate);
    case 2: return tileAvx512Rows<2>(a, lda, panel, k, out, ldo, cols, isAccumulate);
    case 3: return tileAvx512Rows<3>(a, lda, panel, k, out, ldo, cols, isAccumulate);
    case 4: return tileAvx512Rows<4>(a, lda, panel, k, out, ldo, cols, isAccumulate);
    case 5: return tileAvx512Rows<5>(a, lda, panel, k, out, ldo, cols, isAccumulate);
    default: return tileAvx512Rows<6>(a, lda, panel, k, out, ldo, cols, isAccumulate);
  }
}

__attribute__((target("avx2,fma"))) void tileAvx2(const float* a, int64_t lda, const float* panel,
                                                  int64_t k, int64_t rows, float* out, int64_t ldo,
                                                  int64_t cols, bool isAccumulate) {
  constexpr int kRows = 3;
  __m256 acc[kRows][4];
  for (int r = 0; r < kRows; r++) {
    for (int c = 0; c < 4; c++) acc[r][c] = _mm256_setzero_ps();
  }
  for (int64_t p = 0; p < k; p++) {
    const float* wp = panel + p * kPanel;
    __m256 w[4] = {_mm256_loadu_ps(wp), _mm256_loadu_ps(wp + 8), _mm256_loadu_ps(wp + 16),
                   _mm256_loadu_ps(wp + 24)};
    for (int r = 0; r < kRows; r++) {
      if (r < rows) {
        __m256 x = _mm256_broadcast_ss(a + r * lda + p);
        for (int c = 0; c < 4; c++) acc[r][c] = _mm256_fmadd_ps(x, w[c], acc[r][c]);
      }
    }
  }
  alignas(32) float buf[kPanel];
  for (int r = 0; r < rows; r++) {
    for (int c = 0; c < 4; c++) _mm256_store_ps(buf + 8 * c, acc[r][c]);
    storeRow(buf, out + r * ldo, cols, isAccumulate);
  }
}

void tileScalar(const float* a, int64_t lda, const float* panel, int64_t k, int64_t rows,
                float* out, int64_t ldo, int64_t cols, bool isAccumulate) {
  for (int64_t r = 0; r < rows; r++) {
    float acc[kPanel] = {};
    for (int64_t p = 0; p < k; p++) {
      float x = a[r * lda + p];
      for (int64_t c = 0; c < kPanel; c++) acc[c] += x * panel[p * kPanel + c];
    }
    storeRow(acc, out + r * ldo, cols, isAccumulate);
  }
}

using TileFn = void (*)(const float*, int64_t, const float*, int64_t, int64_t, float*, int64_t,
                        int64_t, bool);

struct Isa {
  const char* name;
  TileFn tile;
  int64_t rows;  // rows per tile
};

const Isa& isa() {
  static const Isa chosen = [] {
    __builtin_cpu_init();
    const char* forced = std::getenv("KILN_NATIVE_ISA");  // avx512 | avx2 | scalar (tests)
    bool want512 = forced == nullptr || std::strcmp(forced, "avx512") == 0;
    bool want2 = forced == nullptr || std::strcmp(forced, "avx2") == 0;
    if (want512 && __builtin_cpu_supports("avx512f")) return Isa{"avx512", tileAvx512, 6};
    if ((want2 || want512) && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
      return Isa{"avx2", tileAvx2, 3};
    }
    return Isa{"scalar", tileScalar, 4};
  }();
  return chosen;
}

struct MatmulJob {
  const float* a;
  const TierPacked* w;
  float* out;
  int64_t m;
  bool isAccumulate;
  const float* weights = nullptr;  // the panels; w->data when null
};

// K per cache block: one panel's block (kKBlock × kPanel floats, 32 KiB) stays in L1 while every
// row of a passes over it, and those rows' block (m × kKBlock) stays in L2.
constexpr int64_t kKBlock = 256;

// Panels [first, last) for every row of a: panel outer, tiles of rows inner. Small m (decode,
// two row tiles or fewer): the whole K at once. Larger m (prefill): K in blocks of kKBlock first,
// so a panel's block stays in L1 across the row tiles and the weights are read from memory once
// per call instead of once per tile of rows (the first block writes out, or adds to it when
// accumulating; later blocks add).
void runPanels(const MatmulJob& job, int64_t first, int64_t last) {
  const Isa& kernels = isa();
  const int64_t n = job.w->n;
  const int64_t k = job.w->k;
  const float* panels = job.weights != nullptr ? job.weights : job.w->data.get();
  const int64_t kBlock = job.m <= 2 * kernels.rows ? std::max<int64_t>(k, 1) : kKBlock;
  for (int64_t p0 = 0; p0 < k || p0 == 0; p0 += kBlock) {
    const int64_t kc = std::min(kBlock, k - p0);
    const bool isAccumulate = job.isAccumulate || p0 > 0;
    for (int64_t panel = first; panel < last; panel++) {
      int64_t cols = std::min(kPanel, n - panel * kPanel);
      const float* block = panels + panel * kPanel * k + p0 * kPanel;
      for (int64_t i = 0; i < job.m; i += kernels.rows) {
        int64_t rows = std::min(kernels.rows, job.m - i);
        kernels.tile(job.a + i * k + p0, k, block, kc, rows, job.out + i * n + panel * kPanel, n,
                     cols, isAccumulate);
      }
    }
    if (k == 0) break;
  }
}

void finalizePacked(Napi::Env, TierPacked* packed) { delete packed; }

Napi::Value PackWeights(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3) throw Napi::TypeError::New(env, "packWeights takes 3 arguments");
  Napi::Float32Array w = float32Arg(info, 0, "w");
  int64_t n = dimArg(info, 1, "n");
  int64_t k = dimArg(info, 2, "k");
  requireLen(env, w, n * k, "w");
  auto* packed = new TierPacked();
  packed->n = n;
  packed->k = k;
  packed->numPanels = (n + kPanel - 1) / kPanel;
  size_t bytes = sizeof(float) * static_cast<size_t>(std::max<int64_t>(1, packed->numPanels * kPanel * k));
  packed->data.reset(static_cast<float*>(std::aligned_alloc(64, (bytes + 63) / 64 * 64)));
  for (int64_t panel = 0; panel < packed->numPanels; panel++) {
    packPanel(w.Data(), n, k, panel, packed->data.get() + panel * kPanel * k);
  }
  Napi::MemoryManagement::AdjustExternalMemory(env, static_cast<int64_t>(bytes));
  return Napi::External<TierPacked>::New(env, packed, finalizePacked);
}

Napi::Value MatmulPacked(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 6) throw Napi::TypeError::New(env, "matmulPacked takes 6 arguments");
  Napi::Float32Array a = float32Arg(info, 0, "a");
  if (!info[1].IsExternal()) throw Napi::TypeError::New(env, "packed must be a packWeights handle");
  const TierPacked* w = info[1].As<Napi::External<TierPacked>>().Data();
  Napi::Float32Array out = float32Arg(info, 2, "out");
  int64_t m = dimArg(info, 3, "m");
  bool isAccumulate = info[4].ToBoolean().Value();
  int64_t numThreads = dimArg(info, 5, "numThreads");
  requireLen(env, a, m * w->k, "a");
  requireLen(env, out, m * w->n, "out");
  if (m == 0 || w->n == 0) return env.Undefined();
  MatmulJob job{a.Data(), w, out.Data(), m, isAccumulate};
  int64_t flops = 2 * m * w->n * w->k;
  // Below ~0.2 MFLOP a wake-up costs more than it saves.
  int threads = flops < 200000 ? 1 : static_cast<int>(numThreads > 0 ? numThreads : defaultThreads());
  threads = static_cast<int>(std::min<int64_t>(threads, w->numPanels));
  parallelFor(threads, w->numPanels, [&job](int64_t first, int64_t last) {
    runPanels(job, first, last);
  });
  return env.Undefined();
}

// matmulTransB(a, w, out, m, n, k, accumulate, numThreads): out[M,N] = a[M,K]·w[N,K]ᵀ (+ out)
// for weights used once (attention's products): packs w into a per-thread buffer reused across
// calls, so no handle is allocated.
Napi::Value MatmulTransB(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 8) throw Napi::TypeError::New(env, "matmulTransB takes 8 arguments");
  Napi::Float32Array a = float32Arg(info, 0, "a");
  Napi::Float32Array w = float32Arg(info, 1, "w");
  Napi::Float32Array out = float32Arg(info, 2, "out");
  int64_t m = dimArg(info, 3, "m");
  int64_t n = dimArg(info, 4, "n");
  int64_t k = dimArg(info, 5, "k");
  bool isAccumulate = info[6].ToBoolean().Value();
  int64_t numThreads = dimArg(info, 7, "numThreads");
  requireLen(env, a, m * k, "a");
  requireLen(env, w, n * k, "w");
  requireLen(env, out, m * n, "out");
  if (m == 0 || n == 0) return env.Undefined();
  thread_local std::vector<float> scratch;
  TierPacked packed;
  packed.n = n;
  packed.k = k;
  packed.numPanels = (n + kPanel - 1) / kPanel;
  scratch.resize(static_cast<size_t>(std::max<int64_t>(1, packed.numPanels * kPanel * k)));
  for (int64_t panel = 0; panel < packed.numPanels; panel++) {
    packPanel(w.Data(), n, k, panel, scratch.data() + panel * kPanel * k);
  }
  MatmulJob job{a.Data(), &packed, out.Data(), m, isAccumulate};
  job.weights = scratch.data();
  int64_t flops = 2 * m * n * k;
  int threads = flops < 200000 ? 1 : static_cast<int>(numThreads > 0 ? numThreads : defaultThreads());
  threads = static_cast<int>(std::min<int64_t>(threads, packed.numPanels));
  parallelFor(threads, packed.numPanels, [&job](int64_t first, int64_t last) {
    runPanels(job, first, last);
  });
  return env.Undefined();
}

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("library", "native");
  o.Set("version", "1");
  o.Set("isa", isa().name);
  o.Set("maxThreads", defaultThreads());
  o.Set("waitPolicy", "spin then sleep (tier-pool.h)");
  return o;
}

}  // namespace
}  // namespace kiln

namespace kiln {
// native/elementwise.cc (also in kiln_gemm): rmsNorm, siluMul, applyRope, writeKv.
void registerElementwise(Napi::Env env, Napi::Object exports);
// native/attention.cc built with KILN_TIER_POOL: pagedAttention on tier-pool.h's threads.
void registerAttention(Napi::Env env, Napi::Object exports);
// native/sampling.cc: sampleRow.
void registerSampling(Napi::Env env, Napi::Object exports);
}  // namespace kiln

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("packWeights", Napi::Function::New(env, kiln::PackWeights, "packWeights"));
  exports.Set("matmulPacked", Napi::Function::New(env, kiln::MatmulPacked, "matmulPacked"));
  exports.Set("matmulTransB", Napi::Function::New(env, kiln::MatmulTransB, "matmulTransB"));
  exports.Set("info", Napi::Function::New(env, kiln::Info, "info"));
  kiln::registerElementwise(env, exports);
  kiln::registerAttention(env, exports);
  kiln::registerSampling(env, exports);
  return exports;
}

NODE_API_MODULE(kiln_tier, Init)
