/**
 * Matrix multiply for the CPU backend. Llama linear layers store W as [N, K] (out × in), so the
 * one operation the forward pass needs is out[M, N] = a[M, K] · w[N, K]ᵀ.
 *
 * `a`, `w` and `out` may be subarray views; implementations honour their byte offsets.
 */
export interface Gemm {
  /** Which implementation runs ("typescript", or the native library's name). */
  readonly name: string;
  /** out[M, N] = a[M, K] · w[N, K]ᵀ, plus out's previous contents when `accumulate` is true. */
  matmulTransB(
    a: Float32Array,
    w: Float32Array,
    out: Float32Array,
    m: number,
    n: number,
    k: number,
    accumulate?: boolean,
  ): void;
}

/** Portable fallback: correct everywhere, about 2 GFLOP/s (see ADR 0002). */
export const typescriptGemm: Gemm = {
  name: "typescript",
  matmulTransB(a, w, out, m, n, k, accumulate = false) {
    for (let i = 0; i < m; i++) {
      const aOff = i * k;
      const oOff = i * n;
      for (let j = 0; j < n; j++) {
        const wOff = j * k;
        let s0 = 0;
        let s1 = 0;
        let s2 = 0;
        let s3 = 0;
        let p = 0;
        for (; p + 3 < k; p += 4) {
          s0 += a[aOff + p]! * w[wOff + p]!;
          s1 += a[aOff + p + 1]! * w[wOff + p + 1]!;
          s2 += a[aOff + p + 2]! * w[wOff + p + 2]!;
          s3 += a[aOff + p + 3]! * w[wOff + p + 3]!;
        }
        for (; p < k; p++) s0 += a[aOff + p]! * w[wOff + p]!;
        const s = s0 + s1 + s2 + s3;
        out[oOff + j] = accumulate ? out[oOff + j]! + s : s;
      }
    }
  },
};

/** The fastest available implementation. The native library replaces this in ADR 0002. */
export function createGemm(): Gemm {
  return typescriptGemm;
}
