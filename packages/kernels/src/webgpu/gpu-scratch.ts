import type { LlamaConfig } from "@kiln/model";
import { USAGE } from "./gpu-weights";

/** How many rows of each kind the per-step buffers hold; grown to powers of two on demand. */
export interface StepCapacity {
  readonly numTokens: number;
  readonly numSeqs: number;
  readonly tableLen: number;
  readonly numSamples: number;
}

const STORAGE_IN = USAGE.STORAGE | USAGE.COPY_DST;
const STORAGE_OUT = USAGE.STORAGE | USAGE.COPY_SRC;

/**
 * The per-step device buffers, allocated for a capacity and reused by every step that fits it.
 * Inputs (written by the queue each step) and activations (written by kernels only).
 */
export class GpuScratch {
  readonly capacity: StepCapacity;
  // Inputs, written with queue.writeBuffer before the step's one submission.
  readonly dims: GPUBuffer; // uniform Dims { numTokens, numSamples, numSeqs, pad }
  readonly tokenIds: GPUBuffer; // [numTokens] u32
  readonly positions: GPUBuffer; // [numTokens] u32
  readonly slots: GPUBuffer; // [numTokens] u32
  readonly tokenSeq: GPUBuffer; // [numTokens] u32: the sequence of each token
  readonly identityRows: GPUBuffer; // [numTokens] u32: 0, 1, 2, … (written once)
  readonly ropeCos: GPUBuffer; // [numTokens, headDim / 2]
  readonly ropeSin: GPUBuffer; // [numTokens, headDim / 2]
  readonly tableOffsets: GPUBuffer; // [numSeqs + 1] u32
  readonly tables: GPUBuffer; // [tableLen] u32
  readonly sampleRows: GPUBuffer; // [numSamples] u32: token index of each sampled row
  // Activations.
  readonly x: GPUBuffer; // [numTokens, hiddenSize] residual stream
  readonly xn: GPUBuffer; // [numTokens, hiddenSize] normed
  readonly qkv: GPUBuffer; // [numTokens, qDim + 2 kvDim]
  readonly attn: GPUBuffer; // [numTokens, qDim]
  readonly gateUp: GPUBuffer; // [numTokens, 2 ffn]
  readonly act: GPUBuffer; // [numTokens, ffn]
  readonly sampledHidden: GPUBuffer; // [numSamples, hiddenSize]
  readonly logits: GPUBuffer; // [numSamples, vocabSize]
  readonly greedy: GPUBuffer; // [numSamples, 2] u32: id, f32 bits of its logprob
  /** MAP_READ: [numSamples, 2] greedy results, then up to numSamples logits rows. */
  readonly readback: GPUBuffer;
  readonly readbackLogitsOffset: number;
  private readonly owned: GPUBuffer[] = [];

  constructor(device: GPUDevice, config: LlamaConfig, capacity: StepCapacity) {
    this.capacity = capacity;
    const { numTokens: t, numSeqs, tableLen, numSamples: s } = capacity;
    const { hiddenSize: hidden, headDim, vocabSize, intermediateSize: ffn } = config;
    const qDim = config.numHeads * headDim;
    const qkvLen = qDim + 2 * config.numKvHeads * headDim;
    const make = (label: string, numWords: number, usage: number) => {
      const size = Math.max(16, Math.ceil((numWords * 4) / 16) * 16);
      const b = device.createBuffer({ label, size, usage });
      this.owned.push(b);
      return b;
    };
    this.dims = make("dims", 4, USAGE.UNIFORM | USAGE.COPY_DST);
    this.tokenIds = make("token_ids", t, STORAGE_IN);
    this.positions = make("positions", t, STORAGE_IN);
    this.slots = make("slots", t, STORAGE_IN);
    this.tokenSeq = make("token_seq", t, STORAGE_IN);
    this.identityRows = make("identity_rows", t, STORAGE_IN);
    device.queue.writeBuffer(
      this.identityRows,
      0,
      Uint32Array.from({ length: t }, (_, i) => i),
    );
    this.ropeCos = make("rope_cos", (t * headDim) / 2, STORAGE_IN);
    this.ropeSin = make("rope_sin", (t * headDim) / 2, STORAGE_IN);
    this.tableOffsets = make("table_offsets", numSeqs + 1, STORAGE_IN);
    this.tables = make("tables", tableLen, STORAGE_IN);
    this.sampleRows = make("sample_rows", s, STORAGE_IN);
    this.x = make("x", t * hidden, USAGE.STORAGE);
    this.xn = make("xn", t * hidden, USAGE.STORAGE);
    this.qkv = make("qkv", t * qkvLen, USAGE.STORAGE);
    this.attn = make("attn", t * qDim, USAGE.STORAGE);
    this.gateUp = make("gate_up", t * 2 * ffn, USAGE.STORAGE);
    this.act = make("act", t * ffn, USAGE.STORAGE);
    this.sampledHidden = make("sampled_hidden", s * hidden, USAGE.STORAGE);
    this.logits = make("logits", s * vocabSize, STORAGE_OUT);
    this.greedy = make("greedy", s * 2, STORAGE_OUT);
    this.readbackLogitsOffset = Math.ceil((s * 2 * 4) / 16) * 16;
    this.readback = make(
      "readback",
      this.readbackLogitsOffset / 4 + s * vocabSize,
      USAGE.MAP_READ | USAGE.COPY_DST,
    );
  }

  /** True when a step of these sizes fits without reallocating. */
  fits(need: StepCapacity): boolean {
    const c = this.capacity;
    return (
      need.numTokens <= c.numTokens &&
      need.numSeqs <= c.numSeqs &&
      need.tableLen <= c.tableLen &&
      need.numSamples <= c.numSamples
    );
  }

  destroy(): void {
    for (const b of this.owned) b.destroy();
  }
}

function nextPow2(n: number, min: number): number {
  let p = min;
  while (p < n) p *= 2;
  return p;
}

/**
 * The capacity to allocate for `need`, at least `current` in every dimension, each rounded up
 * to a power of two. Throws when an activation would exceed one storage binding.
 */
export function growCapacity(
  need: StepCapacity,
  current: StepCapacity | null,
  config: LlamaConfig,
  maxBindingBytes: number,
): StepCapacity {
  const grown = {
    numTokens: nextPow2(need.numTokens, current?.numTokens ?? 64),
    numSeqs: nextPow2(need.numSeqs, current?.numSeqs ?? 16),
    tableLen: nextPow2(need.tableLen, current?.tableLen ?? 256),
    numSamples: nextPow2(need.numSamples, current?.numSamples ?? 16),
  };
  const widestRow = Math.max(
    2 * config.intermediateSize,
    config.numHeads * config.headDim + 2 * config.numKvHeads * config.headDim,
  );
  const maxTokens = Math.floor(maxBindingBytes / (widestRow * 4));
  const maxSamples = Math.floor(maxBindingBytes / (config.vocabSize * 4));
  if (need.numTokens > maxTokens || need.numSamples > maxSamples) {
    throw new Error(
      `invalid step input: ${need.numTokens} tokens / ${need.numSamples} samples exceed one storage binding on this adapter (at most ${maxTokens} tokens, ${maxSamples} samples a step)`,
    );
  }
  return {
    ...grown,
    numTokens: Math.min(grown.numTokens, maxTokens),
    numSamples: Math.min(grown.numSamples, maxSamples),
  };
}
