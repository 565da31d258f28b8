import { createRequire } from "node:module";

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

/** How a native GEMM may run. */
export interface GemmOptions {
  /**
   * Threads one call may use: the calling thread plus numThreads - 1 helpers. Default: OpenMP's
   * default for the calling thread (OMP_NUM_THREADS, else the CPUs this process may run on).
   * Ignored by the TypeScript fallback.
   */
  readonly numThreads?: number;
}

/** What the native addon reports about itself, as seen from the calling thread. */
export interface NativeGemmInfo {
  readonly library: string;
  readonly version: string;
  /** Instruction set oneDNN dispatches to on this CPU, e.g. "avx512_core_bf16". */
  readonly isa: string;
  /** Threads a call with the default numThreads would use. */
  readonly maxThreads: number;
  /** How idle helper threads wait, e.g. "GOMP_SPINCOUNT=10000". */
  readonly waitPolicy: string;
}

interface NativeAddon {
  sgemmTransB(
    a: Float32Array,
    w: Float32Array,
    out: Float32Array,
    m: number,
    n: number,
    k: number,
    accumulate: boolean,
    numThreads: number,
  ): void;
  info(): NativeGemmInfo;
}

/** Built by `npm run build` (node-gyp, binding.gyp) relative to this file. */
const ADDON_PATH = "../../build/Release/kiln_gemm.node";

let addon: NativeAddon | null | undefined;
let addonError = "";

function tryLoadAddon(): NativeAddon | null {
  if (addon !== undefined) return addon;
  try {
    addon = createRequire(import.meta.url)(ADDON_PATH) as NativeAddon;
  } catch (err) {
    addon = null;
    addonError = err instanceof Error ? err.message : String(err);
  }
  return addon;
}

/**
 * The native GEMM (oneDNN's sgemm through the kiln_gemm addon), or null when the addon is not
 * built or its library cannot be loaded (`describeNativeGemm()` says why).
 *
 * Threads: calls are synchronous and run on the calling thread plus an OpenMP team that belongs to
 * that thread; the team's helpers spin briefly after each call, then sleep, and exit with the
 * calling thread. Call from one thread per process (the backend's worker_thread): each extra
 * calling thread gets a team of its own. Throws RangeError for bad `numThreads`; matmulTransB
 * throws TypeError/RangeError when an array is not a Float32Array or is shorter than its shape.
 */
export function loadNativeGemm(opts: GemmOptions = {}): Gemm | null {
  const { numThreads } = opts;
  if (numThreads !== undefined && !(Number.isInteger(numThreads) && numThreads >= 1)) {
    throw new RangeError(`numThreads must be a positive integer, got ${numThreads}`);
  }
  const native = tryLoadAddon();
  if (native === null) return null;
  return {
    name: native.info().library,
    matmulTransB(a, w, out, m, n, k, accumulate = false) {
      // 0 asks the addon to keep the calling thread's OpenMP default.
      native.sgemmTransB(a, w, out, m, n, k, accumulate, numThreads ?? 0);
    },
  };
}

/** The fastest available implementation: native when the addon loads, else TypeScript. */
export function createGemm(opts: GemmOptions = {}): Gemm {
  return loadNativeGemm(opts) ?? typescriptGemm;
}

/** One line for logs and benchmarks: the native library and its ISA, or why it is unavailable. */
export function describeNativeGemm(): string {
  const native = tryLoadAddon();
  if (native === null) return `native GEMM unavailable: ${addonError}`;
  const info = native.info();
  return `${info.library} ${info.version} (${info.isa}, ${info.maxThreads} threads by default, ${info.waitPolicy})`;
}
