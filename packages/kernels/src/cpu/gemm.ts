import { selectKernelTier } from "./kernel-tier";
import {
  checkNumThreads,
  type NativeAddon,
  type NativeGemmInfo,
  type NativePackedHandle,
  nativeAddonError,
  tryLoadNativeAddon,
} from "./native-addon";

export type { NativeGemmInfo } from "./native-addon";

/**
 * Weights prepared once by `Gemm.packWeights` for repeated products; opaque. Only the Gemm
 * implementation that packed them (same `kind`) can multiply by them.
 */
export interface PackedWeights {
  /** Rows of w (outputs). */
  readonly n: number;
  /** Columns of w (inputs). */
  readonly k: number;
  /** The implementation that packed them ("typescript", or the native library's name). */
  readonly kind: string;
  /** Bytes of the packed copy; 0 when it aliases the caller's array (the TypeScript fallback). */
  readonly numBytes: number;
}

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
  /**
   * Prepares w [N, K] for `matmulPacked`. The native gemm copies it into the layout its kernels
   * prefer (ADR 0002: about 2× faster at M = 8–32) and the caller may drop w; the TypeScript
   * fallback keeps a reference to w, so w must not be mutated afterwards.
   */
  packWeights(w: Float32Array, n: number, k: number): PackedWeights;
  /**
   * out[M, N] = a[M, K] · wᵀ for packed w, plus out's previous contents when `accumulate` is
   * true. Throws TypeError for weights packed by another implementation.
   */
  matmulPacked(
    a: Float32Array,
    packed: PackedWeights,
    out: Float32Array,
    m: number,
    accumulate?: boolean,
  ): void;
}

/** The TypeScript fallback's "packing": the weights as they are. */
class AliasedWeights implements PackedWeights {
  readonly kind = "typescript";
  readonly numBytes = 0;
  constructor(
    readonly w: Float32Array,
    readonly n: number,
    readonly k: number,
  ) {}
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
  packWeights(w, n, k) {
    if (w.length < n * k) throw new RangeError("w is shorter than its shape");
    return new AliasedWeights(w, n, k);
  },
  matmulPacked(a, packed, out, m, accumulate = false) {
    if (!(packed instanceof AliasedWeights)) {
      throw new TypeError(`weights packed by ${packed.kind} passed to the typescript gemm`);
    }
    typescriptGemm.matmulTransB(a, packed.w, out, m, packed.n, packed.k, accumulate);
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

/** Weights in oneDNN's layout; the handle frees them when it is garbage-collected. */
class NativePackedWeights implements PackedWeights {
  constructor(
    readonly handle: NativePackedHandle,
    readonly kind: string,
    readonly n: number,
    readonly k: number,
    readonly numBytes: number,
  ) {}
}

function nativeGemm(native: NativeAddon, numThreads: number): Gemm {
  const name = native.info().library;
  return {
    name,
    matmulTransB(a, w, out, m, n, k, accumulate = false) {
      native.sgemmTransB(a, w, out, m, n, k, accumulate, numThreads);
    },
    packWeights(w, n, k) {
      const handle = native.packWeights(w, n, k, numThreads);
      return new NativePackedWeights(handle, name, n, k, native.packedInfo(handle).bytes);
    },
    matmulPacked(a, packed, out, m, accumulate = false) {
      if (!(packed instanceof NativePackedWeights)) {
        throw new TypeError(`weights packed by ${packed.kind} passed to the ${name} gemm`);
      }
      native.matmulPacked(a, packed.handle, out, m, accumulate, numThreads);
    },
  };
}

/**
 * The native GEMM (oneDNN through the kiln_gemm addon: dnnl_sgemm for matmulTransB, the matmul
 * primitive for packed weights), or null when the addon is not built or its library cannot be
 * loaded (`describeNativeGemm()` says why).
 *
 * Threads: calls are synchronous and run on the calling thread plus an OpenMP team that belongs to
 * that thread; the team's helpers spin briefly after each call, then sleep, and exit with the
 * calling thread. Call from one thread per process (the backend's worker_thread): each extra
 * calling thread gets a team of its own, and matmulPacked caches its oneDNN primitives per
 * calling thread. Throws RangeError for bad `numThreads`; the products throw TypeError/RangeError
 * when an array is not a Float32Array or is shorter than its shape.
 */
export function loadNativeGemm(opts: GemmOptions = {}): Gemm | null {
  const { numThreads } = opts;
  checkNumThreads(numThreads);
  const native = tryLoadNativeAddon();
  if (native === null) return null;
  // 0 asks the addon to keep the calling thread's OpenMP default.
  return nativeGemm(native, numThreads ?? 0);
}

/**
 * The GEMM of the kernel tier KILN_KERNEL_TIER selects (kernel-tier.ts; by default the fastest
 * that loads: oneDNN, the addon's own GEMM, TypeScript). Throws when a forced tier is unavailable.
 */
export function createGemm(opts: GemmOptions = {}): Gemm {
  return selectKernelTier(opts.numThreads === undefined ? {} : { numThreads: opts.numThreads })
    .gemm;
}

/** What the native addon reports about itself, or null when it is unavailable. */
export function nativeGemmInfo(): NativeGemmInfo | null {
  return tryLoadNativeAddon()?.info() ?? null;
}

/** One line for logs and benchmarks: the native library and its ISA, or why it is unavailable. */
export function describeNativeGemm(): string {
  const native = tryLoadNativeAddon();
  if (native === null) return `native GEMM unavailable: ${nativeAddonError()}`;
  const info = native.info();
  return `${info.library} ${info.version} (${info.isa}, ${info.maxThreads} threads by default, ${info.waitPolicy})`;
}
