import { type LlamaConfig, loadModel, type WeightMap } from "@kiln/model";
import type { BackendInfo, SampledToken, StepInput, StepOutput } from "../backend";
import { createSamplingScratch, type SamplingScratch, sampleRow } from "../sampling";
import { addBias, embed, rmsNorm, siluMul } from "./elementwise";
import { ForwardScratch } from "./forward-scratch";
import { createGemm, type Gemm } from "./gemm";
import { KvCache } from "./kv-cache";
import { type LayerWeights, type LlamaWeights, packLlamaWeights } from "./llama-weights";
import { PagedAttention } from "./paged-attention";
import { applyRope, computeInvFreq, fillRopeTables } from "./rope";
import { validateStepInput } from "./step-validation";

export interface CpuModelRunnerOptions {
  /** KV blocks in the pool (each `kvBytesPerBlock` bytes). */
  readonly numBlocks: number;
  /** Tokens per KV block; 16 by default. */
  readonly blockSize?: number;
  /** Matrix multiply for every projection; `createGemm({ numThreads })` by default. */
  readonly gemm?: Gemm;
  /** Threads the default gemm may use (see GemmOptions); OpenMP's default when absent. */
  readonly numThreads?: number;
  /** Attention through WebAssembly SIMD where available; true by default (false: TypeScript). */
  readonly useSimd?: boolean;
}

export const DEFAULT_BLOCK_SIZE = 16;

/**
 * The CPU Llama forward pass, synchronous and in the calling thread: it owns the packed weights,
 * the KV pool and all scratch. `createCpuBackend` runs one inside a worker thread; tests and
 * benches use it directly. One step at a time (not reentrant).
 */
export class CpuModelRunner {
  readonly info: BackendInfo;
  readonly config: LlamaConfig;
  readonly gemm: Gemm;
  private readonly weights: LlamaWeights;
  private readonly kv: KvCache;
  private readonly attention: PagedAttention;
  private readonly scratch: ForwardScratch;
  private readonly invFreq: Float64Array; // [headDim / 2]
  private readonly samplingScratch: SamplingScratch;

  /**
   * Packs `weights` (HF names; arrays of unfused tensors are aliased, not copied — do not
   * mutate them afterwards) and allocates the KV pool. Throws on a missing or misshapen tensor.
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
    this.gemm = opts.gemm ?? createGemm({ numThreads: opts.numThreads });
    this.weights = packLlamaWeights(config, weights);
    this.kv = new KvCache(
      { ...config, numBlocks: opts.numBlocks, blockSize },
      { maxContextLen: config.maxPositionEmbeddings, useSimd: opts.useSimd ?? true },
    );
    this.attention = new PagedAttention({ ...config, blockSize }, { gemm: this.gemm });
    this.scratch = new ForwardScratch(config);
    this.invFreq = computeInvFreq(config);
    this.samplingScratch = createSamplingScratch(config.vocabSize);
    this.info = {
      name: "cpu",
      numBlocks: opts.numBlocks,
      blockSize,
      vocabSize: config.vocabSize,
      maxModelLen: config.maxPositionEmbeddings,
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
    for (let c = 0; c < input.blockCopies.length; c += 2) {
      this.kv.copyBlock(input.blockCopies[c]!, input.blockCopies[c + 1]!);
    }
    this.forward(input, numTokens);
    const numSamples = this.computeLogits(input);
    const logits = this.scratch.logits;
    const vocabSize = this.config.vocabSize;
    const sampled: (SampledToken | null)[] = [];
    let row = 0;
    for (const req of input.samples) {
      if (req === null) {
        sampled.push(null);
        continue;
      }
      const rowLogits = logits.subarray(row * vocabSize, (row + 1) * vocabSize);
      sampled.push(sampleRow(rowLogits, req, this.samplingScratch));
      row++;
    }
    if (input.returnLogits !== true) return { sampled };
    return { sampled, logits: logits.slice(0, numSamples * vocabSize) };
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

  private runLayer(l: number, w: LayerWeights, input: StepInput, numTokens: number): void {
    const { hiddenSize, numHeads, numKvHeads, headDim, intermediateSize, rmsNormEps } = this.config;
    const qDim = numHeads * headDim;
    const kvDim = numKvHeads * headDim;
    const qkvLen = qDim + 2 * kvDim;
    const s = this.scratch;
    const gemm = this.gemm;
    rmsNorm(s.xn, s.x, w.inputNorm, numTokens, hiddenSize, rmsNormEps);
    gemm.matmulTransB(s.xn, w.qkv, s.qkv, numTokens, qkvLen, hiddenSize);
    if (w.qkvBias !== null) addBias(s.qkv, w.qkvBias, numTokens, qkvLen);
    applyRope(s.qkv, numTokens, qkvLen, 0, numHeads, headDim, s.ropeCos, s.ropeSin);
    applyRope(s.qkv, numTokens, qkvLen, qDim, numKvHeads, headDim, s.ropeCos, s.ropeSin);
    this.kv.writeTokens(l, s.qkv, numTokens, qkvLen, qDim, qDim + kvDim, input.slotMapping);
    this.attention.run(s.attn, s.qkv, qkvLen, 0, this.kv.layers[l]!, input);
    // o_proj and down_proj accumulate into the residual stream: the residual add is free.
    gemm.matmulTransB(s.attn, w.o, s.x, numTokens, hiddenSize, qDim, true);
    rmsNorm(s.xn, s.x, w.postAttentionNorm, numTokens, hiddenSize, rmsNormEps);
    gemm.matmulTransB(s.xn, w.gateUp, s.gateUp, numTokens, 2 * intermediateSize, hiddenSize);
    siluMul(s.act, s.gateUp, numTokens, intermediateSize);
    gemm.matmulTransB(s.act, w.down, s.x, numTokens, hiddenSize, intermediateSize, true);
  }

  /**
   * Final norm and lm_head for the last token of each sequence with a SampleRequest only:
   * scratch.logits becomes [numSamples, vocabSize] in sequence order. Returns numSamples.
   */
  private computeLogits(input: StepInput): number {
    const { hiddenSize, vocabSize, rmsNormEps } = this.config;
    const s = this.scratch;
    let numSamples = 0;
    for (const req of input.samples) if (req !== null) numSamples++;
    if (numSamples === 0) return 0;
    s.ensureSamples(numSamples);
    let row = 0;
    let lastToken = -1;
    for (let q = 0; q < input.queryLens.length; q++) {
      lastToken += input.queryLens[q]!;
      if (input.samples[q] === null) continue;
      const src = s.x.subarray(lastToken * hiddenSize, (lastToken + 1) * hiddenSize);
      const dst = s.sampledHidden.subarray(row * hiddenSize, (row + 1) * hiddenSize);
      rmsNorm(dst, src, this.weights.finalNorm, 1, hiddenSize, rmsNormEps);
      row++;
    }
    const { sampledHidden, logits } = s;
    this.gemm.matmulTransB(
      sampledHidden,
      this.weights.lmHead,
      logits,
      numSamples,
      vocabSize,
      hiddenSize,
    );
    return numSamples;
  }
}

/** Loads `modelDir` (config.json + safetensors) and builds a runner over it. */
export async function loadCpuModelRunner(
  modelDir: string,
  opts: CpuModelRunnerOptions,
): Promise<CpuModelRunner> {
  const { config, weights } = await loadModel(modelDir);
  return new CpuModelRunner(config, weights, opts);
}
