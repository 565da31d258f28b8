import type { LlamaConfig } from "@kiln/model";
import type { GpuPipelines } from "./gpu-pipelines";
import type { GpuScratch } from "./gpu-scratch";
import { type GpuLlamaWeights, type GpuMatrix, USAGE } from "./gpu-weights";

/** Sizes of the step being encoded. */
export interface DispatchCounts {
  readonly numTokens: number;
  readonly numSamples: number;
}

/** One compute dispatch of the forward pass, with its bind group made once. */
export interface Dispatch {
  readonly label: string;
  readonly pipeline: GPUComputePipeline;
  readonly bindGroup: GPUBindGroup;
  /** Workgroups [x, y] for a step of these sizes; [0, 0] skips the dispatch. */
  readonly workgroups: (n: DispatchCounts) => readonly [number, number];
}

/** The KV pool: per layer, K and V each [numBlocks, numKvHeads, blockSize, headDim] f32. */
export interface GpuKvPool {
  readonly k: readonly GPUBuffer[];
  readonly v: readonly GPUBuffer[];
  readonly bytesPerBlock: number; // of one layer's K (or V)
}

const GEMM_ACCUMULATE = 1;
const GEMM_ROWS_ARE_SAMPLES = 2;
const GEMM_HAS_BIAS = 4;

/**
 * Builds every dispatch of a step, in order, for one scratch allocation: embedding, the layers,
 * final norm of the sampled rows, lm_head and greedy sampling. The static uniforms it creates
 * are returned in `owned` for destruction when the scratch is regrown.
 */
export function buildDispatches(
  device: GPUDevice,
  p: GpuPipelines,
  config: LlamaConfig,
  w: GpuLlamaWeights,
  kv: GpuKvPool,
  s: GpuScratch,
  blockSize: number,
): { dispatches: Dispatch[]; owned: GPUBuffer[] } {
  const { hiddenSize: hidden, numHeads, numKvHeads, headDim, intermediateSize: ffn } = config;
  const qDim = numHeads * headDim;
  const kvDim = numKvHeads * headDim;
  const qkvLen = qDim + 2 * kvDim;
  const owned: GPUBuffer[] = [];
  const dummy = device.createBuffer({ size: 16, usage: USAGE.STORAGE });
  owned.push(dummy);
  const uniform = (words: ArrayLike<number>, floats: Record<number, number> = {}) => {
    const data = new Uint32Array(8);
    data.set(words as ArrayLike<number>);
    const f = new Float32Array(data.buffer);
    for (const [i, v] of Object.entries(floats)) f[Number(i)] = v;
    const b = device.createBuffer({ size: 32, usage: USAGE.UNIFORM | USAGE.COPY_DST });
    device.queue.writeBuffer(b, 0, data);
    owned.push(b);
    return b;
  };
  const group = (pipeline: GPUComputePipeline, buffers: readonly GPUBuffer[]) =>
    device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
    });
  const out: Dispatch[] = [];
  const add = (
    label: string,
    pipeline: GPUComputePipeline,
    buffers: readonly GPUBuffer[],
    workgroups: Dispatch["workgroups"],
  ) => out.push({ label, pipeline, bindGroup: group(pipeline, buffers), workgroups });
  const rowsOf = (n: DispatchCounts, flags: number) =>
    (flags & GEMM_ROWS_ARE_SAMPLES) !== 0 ? n.numSamples : n.numTokens;
  /** y[:, yCol0 + …] (+)= x · mᵀ, one dispatch per chunk of m. */
  const gemm = (
    label: string,
    x: GPUBuffer,
    m: GpuMatrix,
    y: GPUBuffer,
    ldy: number,
    flags: number,
    bias: GPUBuffer | null = null,
  ) => {
    for (const c of m.chunks) {
      const f = flags | (bias === null ? 0 : GEMM_HAS_BIAS);
      const params = uniform([c.numRows, m.cols, m.cols, ldy, 0, c.row0, f, 0]);
      add(label, p.gemm, [s.dims, params, x, c.buffer, bias ?? dummy, y], (n) => [
        Math.ceil(c.numRows / 16),
        Math.ceil(rowsOf(n, flags) / 16),
      ]);
    }
  };
  const tokensX = (width: number) => (n: DispatchCounts) =>
    [Math.ceil(width / 64), n.numTokens] as const;
  const eps = config.rmsNormEps;

  for (const c of w.embedTokens.chunks) {
    const params = uniform([hidden, c.row0, c.numRows, 0]);
    add("embed", p.embed, [params, s.tokenIds, c.buffer, s.x], tokensX(hidden));
  }
  const normParams = uniform([hidden, 0, 0, 0], { 1: eps });
  const ropeParams = uniform([qkvLen, numHeads + numKvHeads, headDim, 0]);
  const kvParams = uniform([qkvLen, qDim, qDim + kvDim, kvDim, numKvHeads, headDim, blockSize, 0]);
  const attnParams = uniform(
    [qkvLen, numKvHeads, blockSize, numHeads / numKvHeads, qDim, 0, 0, 0],
    { 5: 1 / Math.sqrt(headDim) },
  );
  const siluParams = uniform([ffn, 0, 0, 0]);
  const tokenRows = (n: DispatchCounts) => [n.numTokens, 1] as const;
  w.layers.forEach((lw, l) => {
    add("norm", p.rmsNorm, [normParams, s.x, lw.inputNorm, s.identityRows, s.xn], tokenRows);
    gemm("qkv", s.xn, lw.qkv, s.qkv, qkvLen, 0, lw.qkvBias);
    // q and k heads are adjacent in a qkv row: one pass rotates both.
    const ropeWidth = ((numHeads + numKvHeads) * headDim) / 2;
    add("rope", p.rope, [ropeParams, s.qkv, s.ropeCos, s.ropeSin], tokensX(ropeWidth));
    add("kv-write", p.kvWrite, [kvParams, s.qkv, s.slots, kv.k[l]!, kv.v[l]!], tokensX(kvDim));
    add(
      "attention",
      p.attention,
      [
        attnParams,
        s.qkv,
        kv.k[l]!,
        kv.v[l]!,
        s.tokenSeq,
        s.positions,
        s.tableOffsets,
        s.tables,
        s.attn,
      ],
      (n) => [numHeads, n.numTokens],
    );
    gemm("o-proj", s.attn, lw.o, s.x, hidden, GEMM_ACCUMULATE);
    add(
      "norm",
      p.rmsNorm,
      [normParams, s.x, lw.postAttentionNorm, s.identityRows, s.xn],
      tokenRows,
    );
    gemm("gate-up", s.xn, lw.gateUp, s.gateUp, 2 * ffn, 0);
    add("silu", p.siluMul, [siluParams, s.gateUp, s.act], tokensX(ffn));
    gemm("down", s.act, lw.down, s.x, hidden, GEMM_ACCUMULATE);
  });
  const sampleRows = (n: DispatchCounts) => [n.numSamples, 1] as const;
  add(
    "final-norm",
    p.rmsNorm,
    [normParams, s.x, w.finalNorm, s.sampleRows, s.sampledHidden],
    sampleRows,
  );
  gemm("lm-head", s.sampledHidden, w.lmHead, s.logits, config.vocabSize, GEMM_ROWS_ARE_SAMPLES);
  const greedyParams = uniform([config.vocabSize, 0, 0, 0]);
  add("greedy", p.greedy, [greedyParams, s.logits, s.greedy], sampleRows);
  return { dispatches: out, owned };
}
