// Portable 16-lane float vectors (GCC vector extensions) for the addon's own kernels. The code
// that uses them is compiled once per instruction set with KILN_MULTIVERSION (AVX-512, AVX2+FMA,
// baseline x86-64; the loader picks by CPUID), so one source serves every x86-64 without
// -march. Helpers are always_inline so that each clone gets its own vector width.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__x86_64__) && defined(__linux__)
#define KILN_MULTIVERSION \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define KILN_MULTIVERSION
#endif
#define KILN_INLINE inline __attribute__((always_inline))

namespace kiln {

constexpr int kLanes = 16;
typedef float vf16 __attribute__((vector_size(64)));
typedef int32_t vi16 __attribute__((vector_size(64)));

KILN_INLINE vf16 load(const float* p) {
  vf16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

KILN_INLINE void store(float* p, vf16 v) { std::memcpy(p, &v, sizeof v); }

KILN_INLINE vf16 splat(float x) { return vf16{} + x; }

// exp(x) for x ≤ 0 (Cephes expf: range reduction by ln 2, degree-6 polynomial, exponent bits;
// relative error ~2e-7). Below −86 it returns 0 rather than a subnormal (e^−86 ≈ 4e-38): softmax
// weights that small cannot change a float32 sum, and subnormal operands are slow on many CPUs.
KILN_INLINE vf16 expNonPositive(vf16 x) {
  const vf16 lo = splat(-86.0f);
  const vi16 isTiny = x < lo;
  x = isTiny ? lo : x;
  vi16 n = __builtin_convertvector(x * 1.44269504088896341f - 0.5f, vi16);  // ≈ round(x / ln 2)
  vf16 nf = __builtin_convertvector(n, vf16);
  vf16 r = x - nf * 0.693359375f + nf * 2.12194440e-4f;
  vf16 p = r * 1.9875691500e-4f + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const vf16 e = p * reinterpret_cast<vf16>((n + 127) << 23);
  return isTiny ? vf16{} : e;
}

KILN_INLINE float sumLanes(vf16 v) {
  float s = 0;
  for (int l = 0; l < kLanes; l++) s += v[l];
  return s;
}

// Halves the partial sums of two vectors into one: lanes [0, 8) fold a, lanes [8, 16) fold b.
// Applied four times (widths 8, 4, 2, 1) it turns 16 vectors into one whose lane i is the sum
// of the lanes of vector i: 15 adds for 16 horizontal sums.
KILN_INLINE vf16 fold8(vf16 a, vf16 b) {
  return __builtin_shufflevector(a, b, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
         __builtin_shufflevector(a, b, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30,
                                 31);
}
KILN_INLINE vf16 fold4(vf16 a, vf16 b) {
  return __builtin_shufflevector(a, b, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27) +
         __builtin_shufflevector(a, b, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
}
KILN_INLINE vf16 fold2(vf16 a, vf16 b) {
  return __builtin_shufflevector(a, b, 0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29) +
         __builtin_shufflevector(a, b, 2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31);
}
KILN_INLINE vf16 fold1(vf16 a, vf16 b) {
  return __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30) +
         __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
}

// Lane i of the result = sum of the lanes of v[i].
KILN_INLINE vf16 sumLanes16(const vf16* v) {
  vf16 a0 = fold8(v[0], v[1]), a1 = fold8(v[2], v[3]), a2 = fold8(v[4], v[5]);
  vf16 a3 = fold8(v[6], v[7]), a4 = fold8(v[8], v[9]), a5 = fold8(v[10], v[11]);
  vf16 a6 = fold8(v[12], v[13]), a7 = fold8(v[14], v[15]);
  vf16 b0 = fold4(a0, a1), b1 = fold4(a2, a3), b2 = fold4(a4, a5), b3 = fold4(a6, a7);
  return fold1(fold2(b0, b1), fold2(b2, b3));
}

}  // namespace kiln
