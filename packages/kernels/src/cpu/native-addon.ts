import { createRequire } from "node:module";
import type { KvPool, KvWriter } from "./kv-cache";

/** Fields of one row of NativeLoraBank.apply's plan. */
export const LORA_PLAN_FIELDS = 9;

/**
 * Batched LoRA (native/lora.cc, LoraSlotTable.apply's contract), SGMV/BGMV style, on the calling
 * thread's OpenMP team. Each slot holds one adapter's A and Bᵀ matrices packed into one
 * Uint16Array of IEEE half floats (loraToHalf); the bank keeps a reference to it. Halves are
 * widened by F16C on AVX-512 machines and by integer vector operations elsewhere.
 */
export interface NativeLoraBank {
  setSlot(slot: number, halves: Uint16Array): void;
  clearSlot(slot: number): void;
  /**
   * For each plan row [group, slot, aOffset, btOffset, rank, inF, outF, outOffset, scale] and
   * each token t of tokens[groupOffsets[group] .. groupOffsets[group + 1]):
   * y[t, outOffset..+outF] += scale · (x[t, 0..inF) · Aᵀ) · Bᵀ, A ([rank, inF]) and Bᵀ
   * ([rank, outF]) read from the slot's halves at their offsets. Throws RangeError for an empty
   * slot, a matrix outside its slot or a row outside x or y, before writing anything.
   * `portableOnly` (tests) forces the integer widening.
   */
  apply(
    x: Float32Array,
    inStride: number,
    y: Float32Array,
    outStride: number,
    tokens: Int32Array,
    groupOffsets: Int32Array,
    plan: Float64Array,
    numThreads: number,
    portableOnly?: boolean,
  ): void;
}

/**
 * The kiln_gemm N-API addon (native/*.cc, built by `npm run build` with node-gyp): oneDNN's
 * sgemm and matmul primitive, and native paged attention. Loaded once per thread on first use;
 * `tryLoadNativeAddon()` is null when it is not built or its library cannot be opened, and
 * `nativeAddonError()` says why. Every function throws TypeError/RangeError on arrays of the
 * wrong type or shorter than their shape, and runs synchronously on the calling thread plus
 * that thread's OpenMP team (numThreads 0 keeps the team's current size).
 */
export interface NativeAddon {
  /** out[M,N] = a[M,K]·w[N,K]ᵀ (+ out) through dnnl_sgemm. */
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
  /** A copy of w [N,K] in the matmul primitive's preferred layout, owned by the handle. */
  packWeights(w: Float32Array, n: number, k: number, numThreads: number): NativePackedHandle;
  /** out[M,N] = a[M,K]·wᵀ (+ out) for weights packed by packWeights. */
  matmulPacked(
    a: Float32Array,
    packed: NativePackedHandle,
    out: Float32Array,
    m: number,
    accumulate: boolean,
    numThreads: number,
  ): void;
  packedInfo(packed: NativePackedHandle): NativePackedInfo;
  /**
   * quant-matmul.cc (ADR 0020): w an Int8Array [N,K] with scales [N, ceil(K/32)] (Q8_0-like
   * groups, weight-formats.ts), or a Uint16Array [N,K] of bf16 bits with scales null, repacked
   * into new arrays of the same types in matmulQuant's panel layout (opaque).
   */
  packQuant?(
    w: Int8Array | Uint16Array,
    scales: Float32Array | null,
    n: number,
    k: number,
  ): { w: Int8Array | Uint16Array; scales: Float32Array | null };
  /**
   * out[M,N] = a[M,K]·wᵀ (+ out) for w and scales as packQuant returned them. Panels of 32
   * columns split over the OpenMP team; AVX-512 when the CPU has it. bf16Activations rounds a
   * to bfloat16 first (ties to even) and uses AVX-512 BF16 pair dot products where present.
   */
  matmulQuant?(
    a: Float32Array,
    w: Int8Array | Uint16Array,
    scales: Float32Array | null,
    out: Float32Array,
    m: number,
    n: number,
    k: number,
    accumulate: boolean,
    numThreads: number,
    bf16Activations: boolean,
  ): void;
  /**
   * "avx512-vbmi" (pair dot products, int8 codes widened by byte lookups), "avx512-bf16",
   * "avx512" or "scalar": the widest path matmulQuant takes on this CPU. With `cap`, first
   * limits later products to that path or narrower (tests of the narrower paths).
   */
  quantIsa?(cap?: "avx512-vbmi" | "avx512-bf16" | "avx512" | "scalar"): string;
  /**
   * Whether new packed weights (packQuant) and KV pools (hugePageBuffer) go to transparent huge
   * pages (huge-pages.cc; on by default); with `on`, first sets it for the whole process.
   */
  hugePages?(on?: boolean): boolean;
  /**
   * A zero-filled ArrayBuffer of `bytes`, in transparent huge pages when they are on and it is
   * at least 64 KiB (2 MiB-aligned chunks advised MADV_HUGEPAGE, shared by buffers).
   */
  hugePageBuffer?(bytes: number): ArrayBuffer;
  /**
   * Whether int8 products ask for their next weight panel while computing one (on by default);
   * with `on`, first sets it (benchmarks that compare both in one process).
   */
  quantPrefetch?(on?: boolean): boolean;
  /**
   * Whether paged attention over a bf16 pool asks for the next keys and values while computing
   * (on by default); with `on`, first sets it.
   */
  attentionPrefetch?(on?: boolean): boolean;
  /**
   * Paged attention (see PagedAttention.run) for every sequence whose queryLen is below
   * skipQueryLen (0: all); other rows of out are untouched. Throws RangeError when a block
   * table points outside the pool.
   */
  pagedAttention(
    out: Float32Array,
    q: Float32Array,
    qStride: number,
    qOffset: number,
    keys: KvPool,
    values: KvPool,
    queryLens: Int32Array,
    contextLens: Int32Array,
    blockTableOffsets: Int32Array,
    blockTables: Int32Array,
    numHeads: number,
    numKvHeads: number,
    headDim: number,
    blockSize: number,
    skipQueryLen: number,
    numThreads: number,
  ): void;
  /** elementwise.ts siluMul, vectorized (float32, relative error ~3e-7). */
  siluMul(out: Float32Array, gateUp: Float32Array, numRows: number, ffnLen: number): void;
  /** elementwise.ts rmsNorm, vectorized (float32 sum of squares). */
  rmsNorm(
    out: Float32Array,
    x: Float32Array,
    weight: Float32Array,
    numRows: number,
    dim: number,
    eps: number,
  ): void;
  /** rope.ts applyRope, vectorized. */
  applyRope(
    buf: Float32Array,
    numTokens: number,
    rowStride: number,
    colOffset: number,
    numHeads: number,
    headDim: number,
    cos: Float32Array,
    sin: Float32Array,
  ): void;
  /** kv-cache.ts KvWriter; throws RangeError for a slot outside the pool. */
  writeKv: KvWriter;
  /** Batched LoRA's resident adapters (native/lora.cc): `numSlots` empty slots. */
  LoraBank: new (
    numSlots: number,
  ) => NativeLoraBank;
  /** dst[i] = src[i] as the nearest IEEE half float's bits (ties to even). */
  loraToHalf(src: Float32Array, dst: Uint16Array): void;
  /**
   * sampling/sample-row.ts's draw and logprobs in native code (native/sampling.cc): returns the
   * token drawn from `row` (processed logits); logprobs come from `raw` (same length; may be
   * `row`). params: [temperature, topK, topP, minP, u, numTopLogprobs]; out: [2 + 2·numTop]
   * ← logprob, number of top entries, then (tokenId, logprob) pairs.
   */
  sampleRow(row: Float32Array, raw: Float32Array, params: Float64Array, out: Float64Array): number;
  info(): NativeGemmInfo;
}

/** An opaque external value; its memory is freed when it is garbage-collected. */
export type NativePackedHandle = { readonly __nativePacked: unique symbol };

export interface NativePackedInfo {
  readonly n: number;
  readonly k: number;
  readonly bytes: number;
  /** oneDNN implementation the layout was chosen for, e.g. "brg:avx512_core". */
  readonly impl: string;
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

/** Built by `npm run build` (node-gyp, binding.gyp) relative to this file. */
const ADDON_PATH = "../../build/Release/kiln_gemm.node";

let addon: NativeAddon | null | undefined;
let addonError = "";

export function tryLoadNativeAddon(): NativeAddon | null {
  if (addon !== undefined) return addon;
  const tier = process.env.KILN_KERNEL_TIER ?? "";
  if (process.env.KILN_DISABLE_ONEDNN === "1" || !["", "auto", "onednn"].includes(tier)) {
    // The tiers that must not use oneDNN never open it (ADR 0022).
    addon = null;
    addonError = `oneDNN disabled (KILN_KERNEL_TIER=${tier || "auto"}, KILN_DISABLE_ONEDNN=${process.env.KILN_DISABLE_ONEDNN ?? ""})`;
    return addon;
  }
  try {
    const loaded = createRequire(import.meta.url)(ADDON_PATH) as Partial<NativeAddon>;
    if (typeof loaded.writeKv !== "function" || typeof loaded.pagedAttention !== "function") {
      throw new Error(`${ADDON_PATH} is out of date: run \`npm run build -w @kiln/kernels\``);
    }
    addon = loaded as NativeAddon;
  } catch (err) {
    addon = null;
    addonError = err instanceof Error ? err.message : String(err);
  }
  return addon;
}

/**
 * Turns the native kernels' software prefetch (int8 weight panels, bf16 KV blocks) on or off in
 * this process, for benchmarks that compare both in one run. False when the addon is not loaded.
 */
export function setNativePrefetch(on: boolean): boolean {
  const loaded = tryLoadNativeAddon();
  if (loaded?.quantPrefetch === undefined || loaded.attentionPrefetch === undefined) return false;
  return loaded.quantPrefetch(on) === on && loaded.attentionPrefetch(on) === on;
}

/**
 * Whether int8 products with bf16 activations widen their codes by byte lookups (AVX-512 VBMI;
 * quant-matmul.cc's CodeLookup), as they do by default where the CPU has it; off, they take the
 * pair dot products' older path (a scratch panel from 8 rows, f32 multiply-adds below). For
 * side-by-side benchmarks. False, changing nothing, where the addon or the CPU lacks it.
 */
export function setNativeCodeLookup(on: boolean): boolean {
  const quantIsa = tryLoadNativeAddon()?.quantIsa;
  if (quantIsa === undefined || quantIsa("avx512-vbmi") !== "avx512-vbmi") return false;
  return on || quantIsa("avx512-bf16") === "avx512-bf16";
}

/**
 * Turns transparent huge pages for packed weights and KV pools on or off in this process (the
 * worker's KILN_HUGE_PAGES; buffers allocated before keep their pages). False, changing
 * nothing, when the addon is not loaded.
 */
export function setNativeHugePages(on: boolean): boolean {
  const hugePages = tryLoadNativeAddon()?.hugePages;
  return hugePages !== undefined && hugePages(on) === on;
}

/**
 * A zero-filled ArrayBuffer of `bytes` for a large, long-lived array: in huge pages through the
 * addon when it is loaded (hugePageBuffer), a plain ArrayBuffer otherwise.
 */
export function newLargeBuffer(bytes: number): ArrayBuffer {
  return tryLoadNativeAddon()?.hugePageBuffer?.(bytes) ?? new ArrayBuffer(bytes);
}

/** Why the addon did not load ("" when it did or was not tried yet). */
export function nativeAddonError(): string {
  return addonError;
}

/** Checks a thread count option: undefined (OpenMP's default) or a positive integer. */
export function checkNumThreads(numThreads: number | undefined): void {
  if (numThreads !== undefined && !(Number.isInteger(numThreads) && numThreads >= 1)) {
    throw new RangeError(`numThreads must be a positive integer, got ${numThreads}`);
  }
}
