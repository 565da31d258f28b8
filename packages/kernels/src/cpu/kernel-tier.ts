import { type Gemm, loadNativeGemm, type PackedWeights, typescriptGemm } from "./gemm";
import { checkNumThreads, nativeAddonError } from "./native-addon";
import { attachGemmKernels, type RowKernels } from "./row-kernels";
import { type LoadedTierAddon, loadTierAddonFrom, type TierPackedHandle } from "./tier-addon";
import {
  createWasmGemm,
  defaultWasmThreads,
  loadWasmGemmModule,
  WASM_GEMM_PATH,
} from "./wasm-gemm";

/**
 * Kernel tiers of the CPU backend (ADR 0022), fastest first:
 *   onednn          the kiln_gemm addon over the system's oneDNN (optional accelerator)
 *   native-avx512 / native-avx2 / native-scalar   kiln_tier, the addon's own GEMM, built from
 *                   source or loaded from the committed prebuilt binary
 *   wasm-simd       the committed WebAssembly SIMD GEMM on worker_threads over shared memory
 *                   (ADR 0026): every platform, the automatic choice where no native tier loads
 *   typescript      pure TypeScript GEMM (attention and row kernels in WebAssembly SIMD)
 *
 * KILN_KERNEL_TIER (worker flag --kernel-tier) forces one: auto (default: the first that
 * loads), onednn, native (source build, else prebuilt), native-source, native-prebuilt, wasm,
 * typescript. A forced tier that cannot load is an error, never a silent fallback.
 */
export const KERNEL_TIER_SETTINGS = [
  "auto",
  "onednn",
  "native",
  "native-source",
  "native-prebuilt",
  "wasm",
  "typescript",
] as const;
export type KernelTierSetting = (typeof KERNEL_TIER_SETTINGS)[number];

export interface KernelTier {
  /** onednn, native-avx512, native-avx2, native-scalar, wasm-simd or typescript. */
  readonly name: string;
  /** Where the kernels come from: oneDNN, a source build, the prebuilt, the wasm, TypeScript. */
  readonly source: "onednn" | "source" | "prebuilt" | "wasm" | "typescript";
  /** False for the tiers that run well under half the fast path's speed (typescript, scalar). */
  readonly isFast: boolean;
  /** One line for logs: the library, its ISA or path, and why faster tiers did not load. */
  readonly detail: string;
}

/** KILN_KERNEL_TIER's value; throws on an unknown one. */
export function kernelTierSetting(
  value: string | undefined = process.env.KILN_KERNEL_TIER,
): KernelTierSetting {
  const v = value === undefined || value === "" ? "auto" : value;
  if (!(KERNEL_TIER_SETTINGS as readonly string[]).includes(v)) {
    throw new Error(
      `KILN_KERNEL_TIER must be one of ${KERNEL_TIER_SETTINGS.join(", ")}; got "${v}"`,
    );
  }
  return v as KernelTierSetting;
}

/** Whether the setting lets the oneDNN addon load (KILN_DISABLE_ONEDNN=1 also forbids it). */
export function allowsOnednn(setting: KernelTierSetting = kernelTierSetting()): boolean {
  return (setting === "auto" || setting === "onednn") && process.env.KILN_DISABLE_ONEDNN !== "1";
}

class TierPackedWeights implements PackedWeights {
  constructor(
    readonly handle: TierPackedHandle,
    readonly kind: string,
    readonly n: number,
    readonly k: number,
    readonly numBytes: number,
  ) {}
}

/**
 * The kiln_tier GEMM as a Gemm; matmulTransB packs into a reused buffer (attention, LoRA). The
 * addon's row kernels (norms, SiLU, RoPE, KV writes) and paged attention come attached
 * (row-kernels.ts gemmKernelsOf).
 */
export function tierGemm(loaded: LoadedTierAddon, numThreads = 0): Gemm {
  const { addon } = loaded;
  const name = `native-${addon.info().isa}`;
  const gemm: Gemm = {
    name,
    matmulTransB(a, w, out, m, n, k, accumulate = false) {
      addon.matmulTransB(a, w, out, m, n, k, accumulate, numThreads);
    },
    packWeights(w, n, k) {
      const bytes = 4 * Math.ceil(n / 32) * 32 * k;
      return new TierPackedWeights(addon.packWeights(w, n, k), name, n, k, bytes);
    },
    matmulPacked(a, packed, out, m, accumulate = false) {
      if (!(packed instanceof TierPackedWeights)) {
        throw new TypeError(`weights packed by ${packed.kind} passed to the ${name} gemm`);
      }
      addon.matmulPacked(a, packed.handle, out, m, accumulate, numThreads);
    },
  };
  const { rmsNorm, siluMul, applyRope, writeKv, pagedAttention, sampleRow } = addon;
  if (rmsNorm && siluMul && applyRope && writeKv) {
    const rows: RowKernels = {
      name: "native",
      rmsNorm: (out, x, weight, numRows, dim, eps) => rmsNorm(out, x, weight, numRows, dim, eps),
      siluMul: (out, gateUp, numRows, ffnLen) => siluMul(out, gateUp, numRows, ffnLen),
      applyRope: (buf, numTokens, rowStride, colOffset, numHeads, headDim, cos, sin) =>
        applyRope(buf, numTokens, rowStride, colOffset, numHeads, headDim, cos, sin),
      writeKv: (...args) => writeKv(...args),
    };
    attachGemmKernels(gemm, {
      rows,
      pagedAttention: pagedAttention ?? null,
      sampleRow: sampleRow ?? null,
    });
  }
  return gemm;
}

function nativeTier(loaded: LoadedTierAddon, why: string): KernelTier {
  const info = loaded.addon.info();
  return {
    name: `native-${info.isa}`,
    source: loaded.source,
    isFast: info.isa !== "scalar",
    detail: `kiln_tier ${info.isa} (${loaded.source}: ${loaded.path}, ${info.maxThreads} threads)${why}`,
  };
}

/**
 * The GEMM and tier for a setting. Throws when a forced tier cannot load (the message says why)
 * and RangeError for a bad numThreads.
 */
export function selectKernelTier(opts: { setting?: KernelTierSetting; numThreads?: number } = {}): {
  gemm: Gemm;
  tier: KernelTier;
} {
  const setting = opts.setting ?? kernelTierSetting();
  checkNumThreads(opts.numThreads);
  const reasons: string[] = [];
  if (allowsOnednn(setting)) {
    const gemm = loadNativeGemm({ numThreads: opts.numThreads });
    if (gemm !== null) {
      const tier = { name: "onednn", source: "onednn", isFast: true, detail: "oneDNN" } as const;
      return { gemm, tier };
    }
    reasons.push(`oneDNN: ${nativeAddonError() || "not loaded"}`);
  } else if (setting === "onednn") {
    throw new Error("KILN_KERNEL_TIER=onednn but KILN_DISABLE_ONEDNN=1");
  }
  if (setting === "onednn") throw new Error(`KILN_KERNEL_TIER=onednn unavailable: ${reasons[0]}`);
  if (setting !== "typescript" && setting !== "wasm") {
    const sources =
      setting === "native-source"
        ? (["source"] as const)
        : setting === "native-prebuilt"
          ? (["prebuilt"] as const)
          : (["source", "prebuilt"] as const);
    for (const source of sources) {
      const loaded = loadTierAddonFrom(source);
      if (typeof loaded !== "string") {
        const why = reasons.length > 0 ? `; ${reasons.join("; ")}` : "";
        return { gemm: tierGemm(loaded, opts.numThreads ?? 0), tier: nativeTier(loaded, why) };
      }
      reasons.push(`kiln_tier ${source}: ${loaded}`);
    }
    if (setting !== "auto") {
      throw new Error(`KILN_KERNEL_TIER=${setting} unavailable: ${reasons.join("; ")}`);
    }
  }
  if (setting === "auto" || setting === "wasm") {
    const module = loadWasmGemmModule();
    if (typeof module !== "string") {
      const threads = opts.numThreads ?? defaultWasmThreads();
      const why = reasons.length > 0 ? `; ${reasons.join("; ")}` : "";
      const detail = `WebAssembly SIMD GEMM (${WASM_GEMM_PATH}, ${threads} threads)${why}`;
      return {
        gemm: createWasmGemm(module, threads),
        tier: { name: "wasm-simd", source: "wasm", isFast: true, detail },
      };
    }
    reasons.push(`wasm: ${module}`);
    if (setting === "wasm") throw new Error(`KILN_KERNEL_TIER=wasm unavailable: ${module}`);
  }
  const detail = `TypeScript GEMM${reasons.length > 0 ? ` (${reasons.join("; ")})` : ""}`;
  return {
    gemm: typescriptGemm,
    tier: { name: "typescript", source: "typescript", isFast: false, detail },
  };
}

/** The tier `selectKernelTier` picks for the current settings, without keeping its GEMM. */
export function resolveKernelTier(setting?: KernelTierSetting): KernelTier {
  return selectKernelTier(setting === undefined ? {} : { setting }).tier;
}
