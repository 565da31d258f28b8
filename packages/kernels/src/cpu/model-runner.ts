import {
  type LlamaConfig,
  loadModel,
  type VocabSlice,
  vocabSlice,
  type WeightMap,
} from "@kiln/model";
import type {
  BackendInfo,
  KvCacheDtype,
  PoolingKind,
  SampledToken,
  StepInput,
  StepOutput,
} from "../backend";
import type { Collective } from "../collectives/collective";
import { createSamplingScratch, type SamplingScratch, sampleRow } from "../sampling";
import { NativeAttention } from "./attention-native";
import { addBias, embed } from "./elementwise";
import { ForwardScratch } from "./forward-scratch";
import { createGemm, type Gemm } from "./gemm";
import { KvCache } from "./kv-cache";
import {
  type PackedLayerWeights,
  type PackedLlamaWeights,
  packLlamaWeights,
  packProjections,
} from "./llama-weights";
import { type LoraGroups, LoraSlotTable, type LoraTargetOutput } from "./lora-slots";
import { type NativeAddon, tryLoadNativeAddon } from "./native-addon";
import {
  type CpuSampling,
  type RowSampler,
  rowSamplerFrom,
  tryNativeRowSampler,
} from "./native-sampling";
import { PagedAttention } from "./paged-attention";
import { gemmForWeightDtype } from "./quantized-gemm";
import { computeInvFreq, fillRopeTables } from "./rope";
import {
  gemmKernelsOf,
  type RowKernels,
  tryNativeRowKernels,
  typescriptRowKernels,
} from "./row-kernels";
import { validateStepInput } from "./step-validation";
import { numVerifiedRows, sampleStepRows } from "./verify-step";
import type { ActivationDtype, WeightDtype } from "./weight-formats";

export interface CpuModelRunnerOptions {
  /** KV blocks in the pool (each `kvBytesPerBlock` bytes). */
  readonly numBlocks: number;
  /** Tokens per KV block; 16 by default. */
  readonly blockSize?: number;
  /** Matrix multiply for every projection; `createGemm({ numThreads })` by default. */
  readonly gemm?: Gemm;
  /** Threads the default gemm may use (see GemmOptions); OpenMP's default when absent. */
  readonly numThreads?: number;
  /**
   * Kernels besides the gemm. "native": the addon's attention (on the gemm's threads) and row
   * kernels (norms, RoPE, SiLU, KV writes); "simd": WebAssembly SIMD attention (one thread) and
   * TypeScript rows; "typescript": TypeScript only. Without native kernels, prefill chunks of 8
   * tokens or more attend through the gemm. Default: native when the addon loads, else simd
   * where WebAssembly SIMD works, else typescript. Asking for "native" without the addon throws.
   */
  readonly kernels?: CpuKernels;
  /** LoRA slots resident in the runner; 0 (no adapters) by default. */
  readonly maxLoras?: number;
  /**
   * Sampling and logprobs: "native" (native/sampling.cc, same tokens as the TypeScript
   * reference) or "typescript". Default: native when the addon loads and `kernels` is not
   * "typescript". Asking for "native" without the addon throws.
   */
  readonly sampling?: CpuSampling;
  /** How projections are stored (KILN_WEIGHT_DTYPE, ADR 0020); "f32" by default. */
  readonly weightDtype?: WeightDtype;
  /**
   * What bf16/int8 projections multiply their activations as (KILN_ACTIVATION_DTYPE, ADR 0020);
   * "f32" by default. Ignored for f32 weights.
   */
  readonly activationDtype?: ActivationDtype;
  /**
   * How the KV pool stores keys and values (KILN_KV_CACHE_DTYPE, ADR 0027); "f32" by default.
   * "bf16" needs the native attention kernel (throws otherwise).
   */
  readonly kvCacheDtype?: KvCacheDtype;
  /** Told when each phase of a step begins (benchmarks time them); none by default. */
  readonly profiler?: StepProfiler;
  /**
   * This runner is one rank of a tensor-parallel group (ADR 0018): `config` and `weights` are
   * the rank's shard (packages/model planTensorShard), o_proj and down_proj outputs are summed
   * over the group; each rank computes its vocabulary slice of the logits, an all-reduce gathers
   * them, and rank 0 samples (the others return null for every sequence). LoRA is not supported with it. None by default.
   */
  readonly collective?: Collective;
}

export type CpuKernels = "native" | "simd" | "typescript";

/** The phases of a step, in the order they run (the layer phases once per layer). */
export type StepPhase =
  | "embed"
  | "norm"
  | "qkv"
  | "rope"
  | "kv-write"
  | "attention"
  | "o-proj"
  | "gate-up"
  | "silu"
  | "down"
  | "lm-head" // final norm and lm_head
  | "sampling"
  | "done";

/**
 * Receives phase boundaries: `enter(p)` ends the previous phase and starts p; "done" ends the
 * step. The runner holds no clock, so the profiler reads its own.
 */
export interface StepProfiler {
  enter(phase: StepPhase): void;
}

export const DEFAULT_BLOCK_SIZE = 16;

const LORA_O: readonly LoraTargetOutput[] = [{ target: "o_proj", outOffset: 0 }];
const LORA_DOWN: readonly LoraTargetOutput[] = [{ target: "down_proj", outOffset: 0 }];

/**
 * The CPU Llama forward pass, synchronous and in the calling thread: it owns the packed weights,
 * the KV pool and all scratch. `createCpuBackend` runs one inside a worker thread; tests and
 * benches use it directly. One step at a time (not reentrant).
 */
export class CpuModelRunner {
  readonly info: BackendInfo;
  readonly config: LlamaConfig;
  readonly gemm: Gemm;
  /** The kernels in use besides the gemm (see CpuModelRunnerOptions.kernels). */
  readonly kernels: CpuKernels;
  private readonly weights: PackedLlamaWeights;
  private readonly kv: KvCache;
  private readonly attention: PagedAttention;
  private readonly scratch: ForwardScratch;
  private readonly invFreq: Float64Array; // [headDim / 2]
  private readonly samplingScratch: SamplingScratch;
  /** The sampler in use (see CpuModelRunnerOptions.sampling). */
  readonly sampling: CpuSampling;
  private readonly sampleRow: RowSampler;
  private readonly profiler: StepProfiler | null;
  private readonly rows: RowKernels;
  /** The resident LoRA adapters (ADR 0015). */
  readonly lora: LoraSlotTable;
  private loraGroups: LoraGroups | null = null;
  /** The LoRA targets of the fused q/k/v and gate/up rows, at their column offsets. */
  private readonly loraQkv: readonly LoraTargetOutput[];
  private readonly loraGateUp: readonly LoraTargetOutput[];
  private readonly collective: Collective | null;
  /** The vocabulary rows this runner's lm_head computes (all of them without tensor parallelism). */
  private readonly lmHeadRows: VocabSlice;
  /** [samples, lmHeadRows.count] logits of a rank's slice before they are gathered. */
  private sliceLogits = new Float32Array(0);

  /**
   * Packs `weights` (HF names) for the gemm and allocates the KV pool. The native gemm copies
   * every projection; the embedding table (and, with the TypeScript gemm, every matrix) is
   * aliased, not copied — do not mutate the map's tensors afterwards. Throws on a missing or
   * misshapen tensor.
   */
  constructor(config: LlamaConfig, weights: WeightMap, opts: CpuModelRunnerOptions) {
    const blockSize = opts.blockSize ?? DEFAULT_BLOCK_SIZE;
    if (!Number.isInteger(blockSize) || blockSize < 1) {
      throw new Error(`bad blockSize ${blockSize}`);
    }
    if (!Number.isInteger(opts.numBlocks) || opts.numBlocks < 1) {
      throw new Error(`bad numBlocks ${opts.numBlocks}`);
    }
    if (config.headDim % 2 !== 0) throw new Error(`headDim ${config.headDim} is odd`);
    this.config = config;
    this.collective = opts.collective ?? null;
    if (this.collective !== null && (opts.maxLoras ?? 0) > 0) {
      throw new Error("LoRA adapters are not supported with tensor parallelism");
    }
    const group = this.collective;
    this.lmHeadRows =
      group === null
        ? { start: 0, count: config.vocabSize }
        : vocabSlice(config.vocabSize, group.rank, group.size);
    const baseGemm = opts.gemm ?? createGemm({ numThreads: opts.numThreads });
    this.gemm = gemmForWeightDtype(baseGemm, opts.weightDtype ?? "f32", {
      numThreads: opts.numThreads ?? 0,
      activations: opts.activationDtype ?? "f32",
    });
    this.weights = packProjections(packLlamaWeights(config, weights, this.lmHeadRows), this.gemm);
    const isNative = opts.kernels === undefined || opts.kernels === "native";
    // kiln_tier's gemm brings its own attention and row kernels (ADR 0026); else kiln_gemm's.
    const tierKernels = opts.kernels !== "typescript" ? gemmKernelsOf(baseGemm) : null;
    const tierAttention = isNative ? (tierKernels?.pagedAttention ?? null) : null;
    const native =
      tierAttention !== null
        ? NativeAttention.fromKernel(tierAttention, { numThreads: opts.numThreads })
        : isNative
          ? NativeAttention.tryCreate({ numThreads: opts.numThreads })
          : null;
    if (opts.kernels === "native" && native === null) {
      throw new Error("native kernels requested but the kiln_gemm addon is unavailable");
    }
    this.rows =
      tierKernels?.rows ?? (native !== null ? tryNativeRowKernels() : null) ?? typescriptRowKernels;
    const kvCacheDtype = opts.kvCacheDtype ?? "f32";
    if (kvCacheDtype === "bf16" && native === null) {
      throw new Error(
        "a bf16 KV cache (KILN_KV_CACHE_DTYPE=bf16) needs the native attention kernel: build the addon or use a native kernel tier",
      );
    }
    this.kv = new KvCache(
      { ...config, numBlocks: opts.numBlocks, blockSize },
      {
        maxContextLen: config.maxPositionEmbeddings,
        // The native kernel reads plain arrays; WebAssembly memory is only for the SIMD kernels.
        useSimd: native === null && opts.kernels !== "typescript",
        writeKv: this.rows.writeKv,
        dtype: kvCacheDtype,
      },
    );
    this.kernels = native !== null ? "native" : this.kv.layers[0]?.simd ? "simd" : "typescript";
    // Native attention takes every chunk: it beats gathering K/V for gemms (ADR 0003).
    const attentionOpts = native !== null ? { native } : { gemm: this.gemm };
    this.attention = new PagedAttention({ ...config, blockSize }, attentionOpts);
    this.scratch = new ForwardScratch(config);
    this.invFreq = computeInvFreq(config);
    this.samplingScratch = createSamplingScratch(config.vocabSize);
    const nativeSampler = pickNativeSampler(opts, tierKernels?.sampleRow ?? null);
    this.sampling = nativeSampler === null ? "typescript" : "native";
    this.sampleRow = nativeSampler ?? sampleRow;
    this.profiler = opts.profiler ?? null;
    // The batched LoRA kernel follows the other kernels: native with the addon (on the gemm's threads).
    const addon = native !== null ? tryLoadNativeAddon() : null;
    const loraNative = addon !== null ? { addon, numThreads: opts.numThreads ?? 0 } : null;
    this.lora = new LoraSlotTable(config, opts.maxLoras ?? 0, this.gemm, loraNative);
    const qDim = config.numHeads * config.headDim;
    const kvDim = config.numKvHeads * config.headDim;
    this.loraQkv = [
      { target: "q_proj", outOffset: 0 },
      { target: "k_proj", outOffset: qDim },
      { target: "v_proj", outOffset: qDim + kvDim },
    ];
    this.loraGateUp = [
      { target: "gate_proj", outOffset: 0 },
      { target: "up_proj", outOffset: config.intermediateSize },
    ];
    this.info = {
      name: "cpu",
      numBlocks: opts.numBlocks,
      blockSize,
      vocabSize: config.vocabSize,
      maxModelLen: config.maxPositionEmbeddings,
      kernelTier: this.gemm.name,
      kvCacheDtype: this.kv.layers[0]?.keys instanceof Uint16Array ? "bf16" : "f32",
    };
  }

  /**
   * Block copies, the forward pass over every scheduled token (writing its K/V), lm_head over
   * the last token of each sequence with a SampleRequest, sampling. Throws "invalid step
   * input: …" before touching the KV pool when the input is inconsistent. The returned logits
   * (with `returnLogits`) are a fresh array owned by the caller.
   */
  step(input: StepInput): StepOutput {
    const numTokens = validateStepInput(input, this.info);
    // Grouping also checks every slot holds an adapter, before anything is written.
    this.loraGroups =
      input.loraSlots === undefined ? null : this.lora.group(input.loraSlots, input.queryLens);
    this.profiler?.enter("embed");
    for (let c = 0; c < input.blockCopies.length; c += 2) {
      this.kv.copyBlock(input.blockCopies[c]!, input.blockCopies[c + 1]!);
    }
    this.forward(input, numTokens);
    const pooled = input.pooling ? this.poolHidden(input, input.pooling) : undefined;
    const numSamples = this.computeLogits(input);
    if (this.collective !== null && this.collective.rank !== 0) {
      this.profiler?.enter("done");
      return { sampled: input.samples.map(() => null) }; // rank 0 samples
    }
    this.profiler?.enter("sampling");
    awaitDeferredMasks(input.masksReady);
    const logits = this.scratch.logits;
    const vocabSize = this.config.vocabSize;
    const sampled: (SampledToken | null)[] = [];
    // Speculative decoding: sequences with drafts own several rows (verify-step.ts).
    const verified = sampleStepRows(input, logits, vocabSize, this.samplingScratch);
    let row = 0;
    for (let i = 0; verified === null && i < input.samples.length; i++) {
      const req = input.samples[i]!;
      if (req === null) {
        sampled.push(null);
        continue;
      }
      const rowLogits = logits.subarray(row * vocabSize, (row + 1) * vocabSize);
      sampled.push(this.sampleRow(rowLogits, req, this.samplingScratch));
      row++;
    }
    if (verified !== null) sampled.push(...verified.map((tokens) => tokens?.[0] ?? null));
    this.profiler?.enter("done");
    const base = pooled ? { sampled, pooled } : { sampled };
    const out = verified === null ? base : { ...base, verified };
    if (input.returnLogits !== true) return out;
    return { ...out, logits: logits.slice(0, numSamples * vocabSize) };
  }

  /** Leaves the residual stream of every token in scratch.x ([numTokens, hiddenSize]). */
  private forward(input: StepInput, numTokens: number): void {
    const hiddenSize = this.config.hiddenSize;
    const s = this.scratch;
    s.ensureTokens(numTokens);
    embed(s.x, this.weights.embedTokens, input.tokenIds, numTokens, hiddenSize);
    fillRopeTables(this.invFreq, input.positions, numTokens, s.ropeCos, s.ropeSin);
    for (let l = 0; l < this.weights.layers.length; l++) {
      this.runLayer(l, this.weights.layers[l]!, input, numTokens);
    }
  }

  private runLayer(l: number, w: PackedLayerWeights, input: StepInput, numTokens: number): void {
    const { hiddenSize, numHeads, numKvHeads, headDim, intermediateSize, rmsNormEps } = this.config;
    const qDim = numHeads * headDim;
    const kvDim = numKvHeads * headDim;
    const qkvLen = qDim + 2 * kvDim;
    const s = this.scratch;
    const gemm = this.gemm;
    const profiler = this.profiler;
    const rows = this.rows;
    profiler?.enter("norm");
    rows.rmsNorm(s.xn, s.x, w.inputNorm, numTokens, hiddenSize, rmsNormEps);
    profiler?.enter("qkv");
    gemm.matmulPacked(s.xn, w.qkv, s.qkv, numTokens);
    const groups = this.loraGroups;
    if (groups !== null) {
      const view = { x: s.xn, inStride: hiddenSize, y: s.qkv, outStride: qkvLen };
      this.lora.apply(groups, l, this.loraQkv, view);
    }
    profiler?.enter("rope");
    if (w.qkvBias !== null) addBias(s.qkv, w.qkvBias, numTokens, qkvLen);
    // q and k heads are adjacent in a qkv row: one pass rotates both.
    const numRotated = numHeads + numKvHeads;
    rows.applyRope(s.qkv, numTokens, qkvLen, 0, numRotated, headDim, s.ropeCos, s.ropeSin);
    profiler?.enter("kv-write");
    this.kv.writeTokens(l, s.qkv, numTokens, qkvLen, qDim, qDim + kvDim, input.slotMapping);
    profiler?.enter("attention");
    this.attention.run(s.attn, s.qkv, qkvLen, 0, this.kv.layers[l]!, input);
    // o_proj and down_proj accumulate into the residual stream: the residual add is free.
    profiler?.enter("o-proj");
    // With tensor parallelism every rank holds the residual; rank 0 adds its partial product to
    // it, the others write theirs, and the all-reduce sums them: x + Σ partials.
    const isResidualRank = this.collective === null || this.collective.rank === 0;
    gemm.matmulPacked(s.attn, w.o, s.x, numTokens, isResidualRank);
    this.collective?.allReduce(s.x, numTokens * hiddenSize);
    if (groups !== null) {
      const view = { x: s.attn, inStride: qDim, y: s.x, outStride: hiddenSize };
      this.lora.apply(groups, l, LORA_O, view);
    }
    profiler?.enter("norm");
    rows.rmsNorm(s.xn, s.x, w.postAttentionNorm, numTokens, hiddenSize, rmsNormEps);
    profiler?.enter("gate-up");
    gemm.matmulPacked(s.xn, w.gateUp, s.gateUp, numTokens);
    if (groups !== null) {
      const view = { x: s.xn, inStride: hiddenSize, y: s.gateUp, outStride: 2 * intermediateSize };
      this.lora.apply(groups, l, this.loraGateUp, view);
    }
    profiler?.enter("silu");
    rows.siluMul(s.act, s.gateUp, numTokens, intermediateSize);
    profiler?.enter("down");
    gemm.matmulPacked(s.act, w.down, s.x, numTokens, isResidualRank);
    this.collective?.allReduce(s.x, numTokens * hiddenSize);
    if (groups !== null) {
      const view = { x: s.act, inStride: intermediateSize, y: s.x, outStride: hiddenSize };
      this.lora.apply(groups, l, LORA_DOWN, view);
    }
  }

  /**
   * The final-normed hidden states of the sequences that ask for pooling: the last query
   * token's, or the sum over the query tokens (accumulated in float64). Reads scratch.x.
   */
  private poolHidden(input: StepInput, pooling: readonly (PoolingKind | null)[]) {
    const { hiddenSize, rmsNormEps } = this.config;
    const normed = new Float32Array(hiddenSize);
    const out: (Float32Array | null)[] = [];
    let first = 0;
    for (let q = 0; q < input.queryLens.length; q++) {
      const queryLen = input.queryLens[q]!;
      const kind = pooling[q] ?? null;
      const from = kind === "last" ? first + queryLen - 1 : first + (input.poolingFrom?.[q] ?? 0);
      const sum = kind === null ? null : new Float64Array(hiddenSize);
      for (let t = from; sum !== null && t < first + queryLen; t++) {
        const src = this.scratch.x.subarray(t * hiddenSize, (t + 1) * hiddenSize);
        this.rows.rmsNorm(normed, src, this.weights.finalNorm, 1, hiddenSize, rmsNormEps);
        for (let h = 0; h < hiddenSize; h++) sum[h]! += normed[h]!;
      }
      out.push(sum === null ? null : Float32Array.from(sum));
      first += queryLen;
    }
    return out;
  }

  /**
   * Final norm and lm_head for the last token of each sequence with a SampleRequest only:
   * scratch.logits becomes [numSamples, vocabSize] in sequence order. Returns numSamples.
   */
  private computeLogits(input: StepInput): number {
    const { hiddenSize, rmsNormEps } = this.config;
    const s = this.scratch;
    this.profiler?.enter("lm-head");
    let numSamples = 0;
    for (let q = 0; q < input.samples.length; q++) numSamples += logitRowsOf(input, q);
    if (numSamples === 0) return 0;
    s.ensureSamples(numSamples);
    let row = 0;
    let lastToken = -1;
    for (let q = 0; q < input.queryLens.length; q++) {
      lastToken += input.queryLens[q]!;
      const numRows = logitRowsOf(input, q);
      // A verification's rows: its last token's and each draft's, in order.
      for (let t = lastToken - numRows + 1; t <= lastToken; t++) {
        const src = s.x.subarray(t * hiddenSize, (t + 1) * hiddenSize);
        const dst = s.sampledHidden.subarray(row * hiddenSize, (row + 1) * hiddenSize);
        this.rows.rmsNorm(dst, src, this.weights.finalNorm, 1, hiddenSize, rmsNormEps);
        row++;
      }
    }
    if (this.collective === null) {
      this.gemm.matmulPacked(s.sampledHidden, this.weights.lmHead, s.logits, numSamples);
      return numSamples;
    }
    // Tensor parallelism: this rank's vocabulary slice, placed among zeros, summed over ranks.
    const { start, count } = this.lmHeadRows;
    const vocabSize = this.config.vocabSize;
    if (this.sliceLogits.length < numSamples * count) {
      this.sliceLogits = new Float32Array(numSamples * count);
    }
    this.gemm.matmulPacked(s.sampledHidden, this.weights.lmHead, this.sliceLogits, numSamples);
    s.logits.fill(0, 0, numSamples * vocabSize);
    for (let r = 0; r < numSamples; r++) {
      const slice = this.sliceLogits.subarray(r * count, (r + 1) * count);
      s.logits.set(slice, r * vocabSize + start);
    }
    this.collective.allReduce(s.logits, numSamples * vocabSize);
    return numSamples;
  }
}

/** How long a step waits for grammar masks its caller computes during the forward pass. */
const DEFERRED_MASK_TIMEOUT_MS = 60_000;

/**
 * Blocks this (backend) thread until the caller has filled the step's grammar masks
 * (StepInput.masksReady); throws when they failed or never came.
 */
function awaitDeferredMasks(ready: Int32Array | undefined): void {
  if (ready === undefined) return;
  const deadline = Date.now() + DEFERRED_MASK_TIMEOUT_MS;
  while (Atomics.load(ready, 0) === 0) {
    const left = deadline - Date.now();
    if (left <= 0) throw new Error("the step's grammar masks did not arrive in time");
    Atomics.wait(ready, 0, 0, left);
  }
  if (Atomics.load(ready, 0) !== 1) throw new Error("the step's grammar masks failed");
}

/**
 * Logit rows sequence `q` needs: its sample's (1, or 1 + drafts), or on a tensor-parallel rank
 * > 0, what rank 0 forwarded (`logitRows`).
 */
function logitRowsOf(input: StepInput, q: number): number {
  const req = input.samples[q];
  if (req !== null && req !== undefined) return numVerifiedRows(req);
  return input.logitRows?.[q] ?? 0;
}

/** Loads `modelDir` (config.json + safetensors) and builds a runner over it. */
export async function loadCpuModelRunner(
  modelDir: string,
  opts: CpuModelRunnerOptions,
): Promise<CpuModelRunner> {
  const { config, weights } = await loadModel(modelDir);
  return new CpuModelRunner(config, weights, opts);
}

/** The native sampler when `opts.sampling` asks for it or defaults to it; throws if it must. */
function pickNativeSampler(
  opts: CpuModelRunnerOptions,
  tierSampleRow: NativeAddon["sampleRow"] | null,
): RowSampler | null {
  if (opts.sampling === "typescript") return null;
  if (opts.sampling === undefined && opts.kernels === "typescript") return null;
  const native = tierSampleRow !== null ? rowSamplerFrom(tierSampleRow) : tryNativeRowSampler();
  if (opts.sampling === "native" && native === null) {
    throw new Error("native sampling requested but the kiln_gemm addon is unavailable");
  }
  return native;
}
