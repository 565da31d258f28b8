import type { LlamaConfig, WeightMap } from "@kiln/model";
import { packLlamaWeights } from "../cpu/llama-weights";

/** GPUBufferUsage bits (the `webgpu` package does not install its globals). */
export const USAGE = {
  MAP_READ: 1,
  COPY_SRC: 4,
  COPY_DST: 8,
  UNIFORM: 64,
  STORAGE: 128,
} as const;

/**
 * A [rows, cols] f32 matrix in device memory, split by rows into chunks that each fit one
 * storage binding (maxStorageBufferBindingSize: 128 MiB on the compatibility adapter), so a
 * large embedding table or lm_head still binds. Chunk i holds rows row0 .. row0 + numRows.
 */
export interface GpuMatrix {
  readonly rows: number;
  readonly cols: number;
  readonly chunks: readonly { buffer: GPUBuffer; row0: number; numRows: number }[];
}

export interface GpuLayerWeights {
  readonly inputNorm: GPUBuffer; // [hiddenSize]
  readonly qkv: GpuMatrix; // [qDim + 2 kvDim, hiddenSize]
  readonly qkvBias: GPUBuffer | null; // [qDim + 2 kvDim]
  readonly o: GpuMatrix; // [hiddenSize, qDim]
  readonly postAttentionNorm: GPUBuffer; // [hiddenSize]
  readonly gateUp: GpuMatrix; // [2 ffn, hiddenSize]
  readonly down: GpuMatrix; // [hiddenSize, ffn]
}

export interface GpuLlamaWeights {
  readonly embedTokens: GpuMatrix; // [vocabSize, hiddenSize]
  readonly layers: readonly GpuLayerWeights[];
  readonly finalNorm: GPUBuffer; // [hiddenSize]
  readonly lmHead: GpuMatrix; // [vocabSize, hiddenSize]; the same chunks as embedTokens when tied
  /** Every buffer above, once, for dispose. */
  readonly all: readonly GPUBuffer[];
}

/** A storage buffer holding `data` (padded to 16 bytes), written through the queue. */
export function uploadVector(device: GPUDevice, data: Float32Array, label: string): GPUBuffer {
  const size = Math.max(16, Math.ceil(data.byteLength / 16) * 16);
  const buffer = device.createBuffer({ label, size, usage: USAGE.STORAGE | USAGE.COPY_DST });
  device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength);
  return buffer;
}

export function uploadMatrix(
  device: GPUDevice,
  data: Float32Array,
  rows: number,
  cols: number,
  maxBindingBytes: number,
  label: string,
): GpuMatrix {
  const rowsPerChunk = Math.floor(maxBindingBytes / (cols * 4));
  if (rowsPerChunk < 1) throw new Error(`${label}: one row of ${cols} floats exceeds a binding`);
  const chunks = [];
  for (let row0 = 0; row0 < rows; row0 += rowsPerChunk) {
    const numRows = Math.min(rowsPerChunk, rows - row0);
    const part = data.subarray(row0 * cols, (row0 + numRows) * cols);
    chunks.push({ buffer: uploadVector(device, part, `${label}[${row0}]`), row0, numRows });
  }
  return { rows, cols, chunks };
}

/**
 * Checks shapes (as the CPU backend does) and uploads every tensor to the device as f32. The
 * fused q/k/v and gate/up matrices are concatenated on the host once, then dropped.
 */
export function uploadLlamaWeights(
  device: GPUDevice,
  config: LlamaConfig,
  weights: WeightMap,
  maxBindingBytes: number,
): GpuLlamaWeights {
  const w = packLlamaWeights(config, weights);
  const { hiddenSize: hidden, vocabSize, intermediateSize: ffn } = config;
  const qDim = config.numHeads * config.headDim;
  const qkvLen = qDim + 2 * config.numKvHeads * config.headDim;
  const all: GPUBuffer[] = [];
  const matrix = (data: Float32Array, rows: number, cols: number, label: string) => {
    const m = uploadMatrix(device, data, rows, cols, maxBindingBytes, label);
    for (const c of m.chunks) all.push(c.buffer);
    return m;
  };
  const vector = (data: Float32Array, label: string) => {
    const b = uploadVector(device, data, label);
    all.push(b);
    return b;
  };
  const embedTokens = matrix(w.embedTokens, vocabSize, hidden, "embed_tokens");
  const layers = w.layers.map((lw, l) => ({
    inputNorm: vector(lw.inputNorm, `l${l}.input_norm`),
    qkv: matrix(lw.qkv, qkvLen, hidden, `l${l}.qkv`),
    qkvBias: lw.qkvBias === null ? null : vector(lw.qkvBias, `l${l}.qkv_bias`),
    o: matrix(lw.o, hidden, qDim, `l${l}.o`),
    postAttentionNorm: vector(lw.postAttentionNorm, `l${l}.post_norm`),
    gateUp: matrix(lw.gateUp, 2 * ffn, hidden, `l${l}.gate_up`),
    down: matrix(lw.down, hidden, ffn, `l${l}.down`),
  }));
  // The whole model is loaded here (no tensor-parallel rank), so lm_head is always present.
  const lmHeadHost = w.lmHead ?? w.embedTokens;
  const lmHead =
    lmHeadHost === w.embedTokens ? embedTokens : matrix(lmHeadHost, vocabSize, hidden, "lm_head");
  return { embedTokens, layers, finalNorm: vector(w.finalNorm, "final_norm"), lmHead, all };
}
