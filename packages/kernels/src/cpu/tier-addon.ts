import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import type { NativeAddon } from "./native-addon";

/**
 * kiln_tier, the addon's own f32 GEMM (native/tier-gemm.cc, ADR 0022): AVX-512/AVX2 chosen at
 * load time, packed weights, its own thread pool, no oneDNN and no OpenMP. Loaded from the
 * source build (build/Release, `npm run build`) or, when that is absent, from the committed
 * prebuilt binary (prebuilds/<platform>-<arch>, scripts/build-prebuilt.mjs), the way
 * node-gyp-build loads prebuildify's output. Functions throw TypeError/RangeError on arrays of
 * the wrong type or shorter than their shape.
 */
export interface TierAddon {
  packWeights(w: Float32Array, n: number, k: number): TierPackedHandle;
  /** out[M,N] = a[M,K]·w[N,K]ᵀ (+ out), w packed into a per-thread buffer reused across calls. */
  matmulTransB(
    a: Float32Array,
    w: Float32Array,
    out: Float32Array,
    m: number,
    n: number,
    k: number,
    accumulate: boolean,
    numThreads: number,
  ): void;
  /** out[M,N] = a[M,K]·wᵀ (+ out); numThreads 0: KILN_NATIVE_THREADS, OMP_NUM_THREADS or all CPUs. */
  matmulPacked(
    a: Float32Array,
    packed: TierPackedHandle,
    out: Float32Array,
    m: number,
    accumulate: boolean,
    numThreads: number,
  ): void;
  info(): { library: "native"; isa: "avx512" | "avx2" | "scalar"; maxThreads: number };
  /** native/elementwise.cc's row kernels (same contracts as NativeAddon's; ADR 0026). */
  rmsNorm?: NativeAddon["rmsNorm"];
  siluMul?: NativeAddon["siluMul"];
  applyRope?: NativeAddon["applyRope"];
  writeKv?: NativeAddon["writeKv"];
  /** native/attention.cc on the addon's own threads (KILN_TIER_POOL). */
  pagedAttention?: NativeAddon["pagedAttention"];
  /** native/sampling.cc. */
  sampleRow?: NativeAddon["sampleRow"];
}

/** An opaque external value; its memory is freed when it is garbage-collected. */
export type TierPackedHandle = { readonly __tierPacked: unique symbol };

/** Where a loaded kiln_tier came from. */
export type TierAddonSource = "source" | "prebuilt";

export interface LoadedTierAddon {
  readonly addon: TierAddon;
  readonly source: TierAddonSource;
  readonly path: string;
}

const PATHS: Record<TierAddonSource, string> = {
  source: fileURLToPath(new URL("../../build/Release/kiln_tier.node", import.meta.url)),
  prebuilt: fileURLToPath(
    new URL(`../../prebuilds/${process.platform}-${process.arch}/kiln_tier.node`, import.meta.url),
  ),
};

const cache = new Map<TierAddonSource, LoadedTierAddon | string>();

/** The addon from one place, or a string saying why it did not load. */
export function loadTierAddonFrom(source: TierAddonSource): LoadedTierAddon | string {
  const cached = cache.get(source);
  if (cached !== undefined) return cached;
  const path = PATHS[source];
  let result: LoadedTierAddon | string;
  if (process.env.KILN_DISABLE_NATIVE_TIER === "1") {
    // Tests and bench:tiers: as on a platform without a kiln_tier build (the wasm tier's case).
    result = "disabled by KILN_DISABLE_NATIVE_TIER=1";
  } else if (!existsSync(path)) {
    result = `${path} not found`;
  } else {
    try {
      const addon = createRequire(import.meta.url)(path) as Partial<TierAddon>;
      if (typeof addon.matmulTransB !== "function") throw new Error(`${path} is out of date`);
      result = { addon: addon as TierAddon, source, path };
    } catch (err) {
      result = err instanceof Error ? err.message : String(err);
    }
  }
  cache.set(source, result);
  return result;
}
