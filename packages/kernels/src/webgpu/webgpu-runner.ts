import type { LlamaConfig, WeightMap } from "@kiln/model";
import type { BackendInfo, SampledToken, StepInput, StepOutput } from "../backend";
import { computeInvFreq, fillRopeTables } from "../cpu/rope";
import { validateStepInput } from "../cpu/step-validation";
import { createSamplingScratch, type SamplingScratch, sampleRow } from "../sampling";
import type { GpuAdapterDescription } from "./gpu-device";
import { isGpuGreedy } from "./gpu-greedy";
import { createGpuPipelines, type GpuPipelines } from "./gpu-pipelines";
import { buildDispatches, type Dispatch, type GpuKvPool } from "./gpu-plan";
import { GpuScratch, growCapacity, type StepCapacity } from "./gpu-scratch";
import { type GpuLlamaWeights, USAGE, uploadLlamaWeights } from "./gpu-weights";

export interface WebGpuRunnerOptions {
  readonly numBlocks: number;
  readonly blockSize: number;
}

const MAP_READ = 1;

/**
 * The Llama forward pass on a WebGPU device (ADR 0019): weights, KV pool and every activation
 * live in device buffers; a step is one command buffer (block copies, then one compute pass of
 * every kernel, then copies into the read-back buffer), one submission and one mapAsync that
 * reads only the greedy ids + logprobs and the logits rows the host must sample. Not reentrant:
 * the caller awaits one step before the next (WebGpuBackend enforces it).
 */
export class WebGpuRunner {
  readonly info: BackendInfo;
  private readonly device: GPUDevice;
  private readonly config: LlamaConfig;
  private readonly weights: GpuLlamaWeights;
  private readonly kv: GpuKvPool;
  private readonly copyScratch: GPUBuffer; // one layer's K (or V) block, for copy-on-write
  private readonly invFreq: Float64Array;
  private readonly maxBindingBytes: number;
  private readonly samplingScratch: SamplingScratch;
  private scratch: GpuScratch | null = null;
  private dispatches: Dispatch[] = [];
  private planBuffers: GPUBuffer[] = [];

  private constructor(
    device: GPUDevice,
    config: LlamaConfig,
    weights: GpuLlamaWeights,
    private readonly pipelines: GpuPipelines,
    opts: WebGpuRunnerOptions,
    adapter: GpuAdapterDescription,
  ) {
    this.device = device;
    this.config = config;
    this.weights = weights;
    this.maxBindingBytes = adapter.maxStorageBufferBindingSize;
    const bytesPerBlock = config.numKvHeads * opts.blockSize * config.headDim * 4;
    const layerBytes = bytesPerBlock * opts.numBlocks;
    if (layerBytes > this.maxBindingBytes) {
      throw new Error(
        `${opts.numBlocks} KV blocks need ${layerBytes} bytes per layer, above the adapter's ${this.maxBindingBytes}-byte storage binding; lower KILN_KV_CACHE_MEMORY`,
      );
    }
    const pool = (kind: string) =>
      Array.from({ length: config.numLayers }, (_, l) =>
        device.createBuffer({
          label: `${kind}_cache.${l}`,
          size: layerBytes,
          usage: USAGE.STORAGE | USAGE.COPY_SRC | USAGE.COPY_DST,
        }),
      );
    this.kv = { k: pool("k"), v: pool("v"), bytesPerBlock };
    this.copyScratch = device.createBuffer({
      label: "block_copy",
      size: bytesPerBlock,
      usage: USAGE.COPY_SRC | USAGE.COPY_DST,
    });
    this.invFreq = computeInvFreq(config);
    this.samplingScratch = createSamplingScratch(config.vocabSize);
    this.info = {
      name: "webgpu",
      numBlocks: opts.numBlocks,
      blockSize: opts.blockSize,
      vocabSize: config.vocabSize,
      maxModelLen: config.maxPositionEmbeddings,
    };
  }

  /** Uploads the weights, allocates the KV pool, compiles the kernels. */
  static async create(
    device: GPUDevice,
    adapter: GpuAdapterDescription,
    config: LlamaConfig,
    weightMap: WeightMap,
    opts: WebGpuRunnerOptions,
  ): Promise<WebGpuRunner> {
    if (!Number.isInteger(opts.blockSize) || opts.blockSize < 1) {
      throw new Error(`bad blockSize ${opts.blockSize}`);
    }
    if (!Number.isInteger(opts.numBlocks) || opts.numBlocks < 1) {
      throw new Error(`bad numBlocks ${opts.numBlocks}`);
    }
    if (config.headDim % 2 !== 0) throw new Error(`headDim ${config.headDim} is odd`);
    const pipelines = await createGpuPipelines(device, config.headDim);
    const weights = uploadLlamaWeights(
      device,
      config,
      weightMap,
      adapter.maxStorageBufferBindingSize,
    );
    return new WebGpuRunner(device, config, weights, pipelines, opts, adapter);
  }

  /** See Backend.step. Rejects "invalid step input: …" before anything reaches the device. */
  async step(input: StepInput): Promise<StepOutput> {
    const numTokens = validateStepInput(input, this.info);
    rejectUnsupported(input);
    const numSeqs = input.queryLens.length;
    const sampleTokens: number[] = [];
    let last = -1;
    for (let q = 0; q < numSeqs; q++) {
      last += input.queryLens[q]!;
      if (input.samples[q] !== null) sampleTokens.push(last);
    }
    const numSamples = sampleTokens.length;
    const scratch = this.ensureScratch({
      numTokens,
      numSeqs,
      tableLen: input.blockTables.length,
      numSamples,
    });
    this.writeInputs(scratch, input, numTokens, sampleTokens);
    const hostRows: number[] = []; // sample rows whose logits the host reads
    let row = 0;
    for (const req of input.samples) {
      if (req === null) continue;
      if (input.returnLogits === true || !isGpuGreedy(req)) hostRows.push(row);
      row++;
    }
    this.encodeAndSubmit(scratch, input, { numTokens, numSamples }, hostRows);
    if (numSamples === 0) {
      await keepAlive(this.device.queue.onSubmittedWorkDone());
      return { sampled: input.samples.map(() => null) };
    }
    return this.readResults(scratch, input, numSamples, hostRows);
  }

  private ensureScratch(need: StepCapacity): GpuScratch {
    if (this.scratch?.fits(need)) return this.scratch;
    const capacity = growCapacity(
      need,
      this.scratch?.capacity ?? null,
      this.config,
      this.maxBindingBytes,
    );
    this.scratch?.destroy();
    for (const b of this.planBuffers) b.destroy();
    const scratch = new GpuScratch(this.device, this.config, capacity);
    const plan = buildDispatches(
      this.device,
      this.pipelines,
      this.config,
      this.weights,
      this.kv,
      scratch,
      this.info.blockSize,
    );
    this.scratch = scratch;
    this.dispatches = plan.dispatches;
    this.planBuffers = plan.owned;
    return scratch;
  }

  private writeInputs(
    s: GpuScratch,
    input: StepInput,
    numTokens: number,
    sampleTokens: readonly number[],
  ): void {
    const queue = this.device.queue;
    const numSeqs = input.queryLens.length;
    const halfDim = this.config.headDim / 2;
    const tokenSeq = new Uint32Array(numTokens);
    for (let q = 0, t = 0; q < numSeqs; q++) {
      for (let i = 0; i < input.queryLens[q]!; i++) tokenSeq[t++] = q;
    }
    const cos = new Float32Array(numTokens * halfDim);
    const sin = new Float32Array(numTokens * halfDim);
    fillRopeTables(this.invFreq, input.positions, numTokens, cos, sin);
    queue.writeBuffer(s.dims, 0, Uint32Array.of(numTokens, sampleTokens.length, numSeqs, 0));
    // Validated non-negative, so the Int32 bits are the u32 values the kernels read.
    queue.writeBuffer(s.tokenIds, 0, input.tokenIds);
    queue.writeBuffer(s.positions, 0, input.positions);
    queue.writeBuffer(s.slots, 0, input.slotMapping);
    queue.writeBuffer(s.tokenSeq, 0, tokenSeq);
    queue.writeBuffer(s.ropeCos, 0, cos);
    queue.writeBuffer(s.ropeSin, 0, sin);
    queue.writeBuffer(s.tableOffsets, 0, input.blockTableOffsets);
    if (input.blockTables.length > 0) queue.writeBuffer(s.tables, 0, input.blockTables);
    if (sampleTokens.length > 0) queue.writeBuffer(s.sampleRows, 0, Uint32Array.from(sampleTokens));
  }

  private encodeAndSubmit(
    s: GpuScratch,
    input: StepInput,
    counts: { numTokens: number; numSamples: number },
    hostRows: readonly number[],
  ): void {
    const encoder = this.device.createCommandEncoder({ label: "step" });
    // Copy-on-write first, before any K/V of this step is written (a buffer cannot be copied
    // onto itself, hence the bounce through copyScratch).
    const blockBytes = this.kv.bytesPerBlock;
    for (let c = 0; c < input.blockCopies.length; c += 2) {
      const src = input.blockCopies[c]! * blockBytes;
      const dst = input.blockCopies[c + 1]! * blockBytes;
      for (const pool of [this.kv.k, this.kv.v]) {
        for (const buffer of pool) {
          encoder.copyBufferToBuffer(buffer, src, this.copyScratch, 0, blockBytes);
          encoder.copyBufferToBuffer(this.copyScratch, 0, buffer, dst, blockBytes);
        }
      }
    }
    const pass = encoder.beginComputePass({ label: "forward" });
    for (const d of this.dispatches) {
      const [x, y] = d.workgroups(counts);
      if (x === 0 || y === 0) continue;
      pass.setPipeline(d.pipeline);
      pass.setBindGroup(0, d.bindGroup);
      pass.dispatchWorkgroups(x, y);
    }
    pass.end();
    if (counts.numSamples > 0) {
      encoder.copyBufferToBuffer(s.greedy, 0, s.readback, 0, counts.numSamples * 8);
      const rowBytes = this.config.vocabSize * 4;
      hostRows.forEach((r, i) => {
        const at = s.readbackLogitsOffset + i * rowBytes;
        encoder.copyBufferToBuffer(s.logits, r * rowBytes, s.readback, at, rowBytes);
      });
    }
    this.device.queue.submit([encoder.finish()]);
  }

  private async readResults(
    s: GpuScratch,
    input: StepInput,
    numSamples: number,
    hostRows: readonly number[],
  ): Promise<StepOutput> {
    const vocab = this.config.vocabSize;
    const size = s.readbackLogitsOffset + hostRows.length * vocab * 4;
    await keepAlive(s.readback.mapAsync(MAP_READ, 0, size));
    const bytes = s.readback.getMappedRange(0, size).slice(0);
    s.readback.unmap();
    const greedy = new Uint32Array(bytes, 0, numSamples * 2);
    const greedyLogprobs = new Float32Array(bytes, 0, numSamples * 2);
    const hostLogits = new Float32Array(bytes, s.readbackLogitsOffset, hostRows.length * vocab);
    const sampled: (SampledToken | null)[] = [];
    let row = 0;
    for (const req of input.samples) {
      if (req === null) {
        sampled.push(null);
        continue;
      }
      const h = hostRows.indexOf(row);
      if (h >= 0 && !(isGpuGreedy(req) && input.returnLogits === true)) {
        const rowLogits = hostLogits.subarray(h * vocab, (h + 1) * vocab);
        sampled.push(sampleRow(rowLogits, req, this.samplingScratch));
      } else {
        sampled.push({
          tokenId: greedy[2 * row]!,
          logprob: greedyLogprobs[2 * row + 1]!,
          topLogprobs: [],
        });
      }
      row++;
    }
    if (input.returnLogits !== true) return { sampled };
    return { sampled, logits: hostLogits.slice(0, numSamples * vocab) };
  }

  /** Frees every device buffer this runner created (the device itself belongs to the caller). */
  destroy(): void {
    this.scratch?.destroy();
    for (const b of this.planBuffers) b.destroy();
    for (const b of [...this.kv.k, ...this.kv.v, this.copyScratch, ...this.weights.all]) {
      b.destroy();
    }
  }
}

/** LoRA and pooling have no WebGPU kernels yet: such steps are rejected, never half-run. */
function rejectUnsupported(input: StepInput): void {
  if (input.loraLoads !== undefined && input.loraLoads.length > 0) {
    throw new Error("invalid step input: the webgpu backend does not serve LoRA adapters");
  }
  if (input.loraSlots?.some((slot) => slot >= 0)) {
    throw new Error("invalid step input: the webgpu backend does not serve LoRA adapters");
  }
  if (input.pooling?.some((kind) => kind !== null && kind !== undefined)) {
    throw new Error("invalid step input: the webgpu backend does not pool hidden states");
  }
}

/**
 * Dawn's Node bindings resolve mapAsync from their own event processing, which does not hold
 * Node's event loop open: without a pending timer the process could exit (or stall) with the
 * promise unresolved. A 1 ms interval keeps the loop turning until the GPU answers.
 */
async function keepAlive<T>(promise: Promise<T>): Promise<T> {
  const timer = setInterval(() => {}, 1);
  try {
    return await promise;
  } finally {
    clearInterval(timer);
  }
}
