// The WebAssembly SIMD GEMM tier (ADR 0026): out[M,N] = a[M,K]·w[N,K]ᵀ (+ out) in freestanding C
// compiled to wasm32 with SIMD128 (no libc, no stack use, no data), so one module instance per
// thread can share one WebAssembly.Memory (src/cpu/wasm-gemm*.ts runs them on worker_threads).
// Rebuilt by `node scripts/build-wasm.mjs` into prebuilds/wasm32/kiln_gemm_simd.wasm.
//
// Weights are packed once into panels of NR (8) output columns, k-major (the caller does this:
// packed[p*K*NR + kk*NR + c] = w[(p*NR + c)*K + kk], zero past N). A thread computes the panels
// [p0, p1) for every row: K in blocks of KC so a panel's block (KC × NR floats, 8 KiB) stays in
// L1 while all rows pass over it. The register tile is MR (4) rows × 8 columns: 8 f32x4
// accumulators, 2 weight loads and 4 broadcasts per 8 multiply-adds (WebAssembly SIMD has no
// fused multiply-add, so each is a mul then an add, rounded twice). A 6-row tile (12
// accumulators) spills in V8 on x64 (16 xmm registers, one kept as scratch): 23–25 GFLOP/s on
// one thread at M = 256 against 36–37 for 4 rows.
#include <wasm_simd128.h>

#define NR 8
#define MR 4
#define KC 256

typedef __SIZE_TYPE__ size_t;

// Stores (or adds) the first `cols` (< 8) lanes of a tile row, lane by lane: no stack buffer.
static inline __attribute__((always_inline)) void store_partial(float* c, v128_t v0, v128_t v1,
                                                                 int cols, int acc) {
  float l[NR] = {wasm_f32x4_extract_lane(v0, 0), wasm_f32x4_extract_lane(v0, 1),
                 wasm_f32x4_extract_lane(v0, 2), wasm_f32x4_extract_lane(v0, 3),
                 wasm_f32x4_extract_lane(v1, 0), wasm_f32x4_extract_lane(v1, 1),
                 wasm_f32x4_extract_lane(v1, 2), wasm_f32x4_extract_lane(v1, 3)};
#pragma clang loop unroll(full)
  for (int j = 0; j < NR; j++) {
    if (j < cols) c[j] = acc ? c[j] + l[j] : l[j];
  }
}

// One R × 8 tile over kc values of K. a: row 0 of the tile at column kk0; b: the panel's block.
#define DEFINE_TILE(R)                                                                        \
  static void tile##R(const float* a, int lda, const float* b, int kc, float* c, int ldc,     \
                      int cols, int acc) {                                                    \
    v128_t s0[R], s1[R];                                                                      \
    _Pragma("clang loop unroll(full)") for (int r = 0; r < R; r++) {                          \
      s0[r] = wasm_f32x4_splat(0.0f);                                                         \
      s1[r] = wasm_f32x4_splat(0.0f);                                                         \
    }                                                                                         \
    for (int kk = 0; kk < kc; kk++) {                                                         \
      v128_t b0 = wasm_v128_load(b + kk * NR);                                                \
      v128_t b1 = wasm_v128_load(b + kk * NR + 4);                                            \
      _Pragma("clang loop unroll(full)") for (int r = 0; r < R; r++) {                        \
        v128_t x = wasm_v128_load32_splat(a + r * lda + kk);                                  \
        s0[r] = wasm_f32x4_add(s0[r], wasm_f32x4_mul(x, b0));                                 \
        s1[r] = wasm_f32x4_add(s1[r], wasm_f32x4_mul(x, b1));                                 \
      }                                                                                       \
    }                                                                                         \
    _Pragma("clang loop unroll(full)") for (int r = 0; r < R; r++) {                          \
      float* cr = c + r * ldc;                                                                \
      if (cols == NR) {                                                                       \
        v128_t v0 = s0[r], v1 = s1[r];                                                        \
        if (acc) {                                                                            \
          v0 = wasm_f32x4_add(wasm_v128_load(cr), v0);                                        \
          v1 = wasm_f32x4_add(wasm_v128_load(cr + 4), v1);                                    \
        }                                                                                     \
        wasm_v128_store(cr, v0);                                                              \
        wasm_v128_store(cr + 4, v1);                                                          \
      } else {                                                                                \
        store_partial(cr, s0[r], s1[r], cols, acc);                                           \
      }                                                                                       \
    }                                                                                         \
  }

DEFINE_TILE(1)
DEFINE_TILE(2)
DEFINE_TILE(3)
DEFINE_TILE(4)

static void tile(int rows, const float* a, int lda, const float* b, int kc, float* c, int ldc,
                 int cols, int acc) {
  switch (rows) {
    case 1: tile1(a, lda, b, kc, c, ldc, cols, acc); break;
    case 2: tile2(a, lda, b, kc, c, ldc, cols, acc); break;
    case 3: tile3(a, lda, b, kc, c, ldc, cols, acc); break;
    default: tile4(a, lda, b, kc, c, ldc, cols, acc); break;
  }
}

// out[m, n] (row stride n) = a[m, k] · packedᵀ (+ out when acc != 0), panels [p0, p1) only.
__attribute__((export_name("kiln_gemm"))) void kiln_gemm(const float* a, const float* packed,
                                                          float* out, int m, int n, int k,
                                                          int acc, int p0, int p1) {
  if (k == 0) {
    // No products: out keeps its contents when accumulating, else becomes zero.
    if (acc) return;
    for (int i = 0; i < m; i++) {
      for (int j = p0 * NR; j < p1 * NR && j < n; j++) out[i * n + j] = 0.0f;
    }
    return;
  }
  for (int k0 = 0; k0 < k; k0 += KC) {
    int kc = k - k0 < KC ? k - k0 : KC;
    int blockAcc = acc || k0 > 0;
    for (int p = p0; p < p1; p++) {
      int cols = n - p * NR < NR ? n - p * NR : NR;
      const float* b = packed + (size_t)p * k * NR + (size_t)k0 * NR;
      for (int i = 0; i < m; i += MR) {
        int rows = m - i < MR ? m - i : MR;
        tile(rows, a + (size_t)i * k + k0, k, b, kc, out + (size_t)i * n + p * NR, n, cols,
             blockAcc);
      }
    }
  }
}

// Packs the panels [p0, p1) of w [n, k] (row-major) into `packed` (layout above).
__attribute__((export_name("kiln_pack"))) void kiln_pack(const float* w, float* packed, int n,
                                                          int k, int p0, int p1) {
  for (int p = p0; p < p1; p++) {
    float* dst = packed + (size_t)p * k * NR;
    for (int c = 0; c < NR; c++) {
      int j = p * NR + c;
      if (j < n) {
        const float* src = w + (size_t)j * k;
        for (int kk = 0; kk < k; kk++) dst[kk * NR + c] = src[kk];
      } else {
        for (int kk = 0; kk < k; kk++) dst[kk * NR + c] = 0.0f;
      }
    }
  }
}

// ---- Row kernels (ADR 0026): the same contracts as native/elementwise.cc, four lanes at a time.

typedef float v4f __attribute__((vector_size(16)));
typedef int v4i __attribute__((vector_size(16)));

static inline v4f load4(const float* p) { return (v4f)wasm_v128_load(p); }
static inline void store4(float* p, v4f v) { wasm_v128_store(p, (v128_t)v); }
static inline v4f splat4(float x) { return (v4f)wasm_f32x4_splat(x); }

// exp(x) for x ≤ 0 (Cephes expf, as native/simd.h expNonPositive): 0 below −86.
static inline v4f exp_non_positive(v4f x) {
  const v4i tiny = x < splat4(-86.0f);
  x = (v4f)wasm_v128_bitselect((v128_t)splat4(-86.0f), (v128_t)x, (v128_t)tiny);
  v4i n = __builtin_convertvector(x * 1.44269504088896341f - 0.5f, v4i);
  v4f nf = __builtin_convertvector(n, v4f);
  v4f r = x - nf * 0.693359375f + nf * 2.12194440e-4f;
  v4f p = r * 1.9875691500e-4f + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const v4f e = p * (v4f)((n + 127) << 23);
  return (v4f)wasm_v128_andnot((v128_t)e, (v128_t)tiny);
}

// silu(g) = g · sigmoid(g), exp taken of −|g| only.
static inline v4f silu4(v4f g) {
  const v4i neg = g < splat4(0.0f);
  const v4f e = exp_non_positive((v4f)wasm_v128_bitselect((v128_t)g, (v128_t)(-g), (v128_t)neg));
  const v4f num = (v4f)wasm_v128_bitselect((v128_t)e, (v128_t)splat4(1.0f), (v128_t)neg);
  return g * (num / (splat4(1.0f) + e));
}

// out[r, i] = silu(gateUp[r, i]) · gateUp[r, ffn + i] for rows [r0, r1).
__attribute__((export_name("kiln_silu_mul"))) void kiln_silu_mul(float* out, const float* gateUp,
                                                                  int ffn, int r0, int r1) {
  const int full = ffn / 4 * 4;
  for (int r = r0; r < r1; r++) {
    const float* gate = gateUp + (size_t)r * 2 * ffn;
    const float* up = gate + ffn;
    float* o = out + (size_t)r * ffn;
    for (int i = 0; i < full; i += 4) store4(o + i, silu4(load4(gate + i)) * load4(up + i));
    for (int i = full; i < ffn; i++) o[i] = silu4(splat4(gate[i]))[0] * up[i];
  }
}

// out[r, :] = x[r, :] / sqrt(mean(x[r, :]²) + eps) · weight for rows [r0, r1); out may alias x.
__attribute__((export_name("kiln_rms_norm"))) void kiln_rms_norm(float* out, const float* x,
                                                                  const float* weight, int dim,
                                                                  float eps, int r0, int r1) {
  const int full = dim / 4 * 4;
  for (int r = r0; r < r1; r++) {
    const float* xr = x + (size_t)r * dim;
    float* o = out + (size_t)r * dim;
    v4f acc = splat4(0.0f);
    for (int i = 0; i < full; i += 4) {
      const v4f v = load4(xr + i);
      acc += v * v;
    }
    double sumSq = (double)acc[0] + acc[1] + acc[2] + acc[3];
    for (int i = full; i < dim; i++) sumSq += (double)xr[i] * xr[i];
    const float inv = (float)(1.0 / __builtin_sqrt(sumSq / dim + eps));
    for (int i = 0; i < full; i += 4) store4(o + i, load4(xr + i) * inv * load4(weight + i));
    for (int i = full; i < dim; i++) o[i] = (xr[i] * inv) * weight[i];
  }
}
