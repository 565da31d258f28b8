import {
  createGemm,
  createSamplingScratch,
  DEFAULT_SAMPLING,
  gemmForWeightDtype,
  type KvCacheDtype,
  loadCpuModelRunner,
  parseActivationDtype,
  parseWeightDtype,
  type SampleRequest,
  type StepInput,
  sampleRow,
  tryNativeRowSampler,
} from "@kiln/kernels";

/**
 * How the worker's compute for one decode step divides between the model's kernels (forward
 * pass + lm_head) and sampling. It runs the worker's own code, CpuModelRunner.step and
 * sampleRow, in this process on the same model and batch, because the worker reports only
 * the total (`computeSeconds`): kernels = step − sampling.
 */

export interface StepSplit {
  readonly numSeqs: number;
  readonly contextLen: number;
  /** Median ms of CpuModelRunner.step (forward, lm_head, sampling), in-thread. */
  readonly stepMs: number;
  /** Median ms of greedy sampling (the worker's sampler) over the batch's logit rows. */
  readonly samplingMs: number;
  readonly kernelsMs: number;
}

const BLOCK_SIZE = 16;

/** A decode step: `numSeqs` sequences, one new token each at position contextLen − 1. */
function decodeStep(
  numSeqs: number,
  contextLen: number,
  vocabSize: number,
  greedy: SampleRequest,
): StepInput {
  const blocksPerSeq = Math.ceil(contextLen / BLOCK_SIZE);
  const pos = contextLen - 1;
  const blockTables = new Int32Array(numSeqs * blocksPerSeq); // [numSeqs × blocksPerSeq]
  for (let i = 0; i < blockTables.length; i++) blockTables[i] = i;
  return {
    tokenIds: Int32Array.from({ length: numSeqs }, (_, s) => 3 + ((s * 7919) % (vocabSize - 3))),
    positions: new Int32Array(numSeqs).fill(pos),
    queryLens: new Int32Array(numSeqs).fill(1),
    contextLens: new Int32Array(numSeqs).fill(contextLen),
    blockTableOffsets: Int32Array.from({ length: numSeqs + 1 }, (_, s) => s * blocksPerSeq),
    blockTables,
    slotMapping: Int32Array.from(
      { length: numSeqs },
      (_, s) => (s * blocksPerSeq + Math.floor(pos / BLOCK_SIZE)) * BLOCK_SIZE + (pos % BLOCK_SIZE),
    ),
    blockCopies: new Int32Array(0),
    samples: new Array(numSeqs).fill(greedy),
  };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function timeMs(fn: () => void, numReps: number): number {
  fn(); // warm-up
  const samples: number[] = [];
  for (let i = 0; i < numReps; i++) {
    const started = performance.now();
    fn();
    samples.push(performance.now() - started);
  }
  return median(samples);
}

/**
 * Loads the model (seconds for llama-110m) in the worker's formats (weights, activations, KV
 * cache: the worker's --weight-dtype, --activation-dtype and --kv-cache-dtype) and times
 * `numReps` steps of each kind.
 */
export async function measureStepSplit(
  modelDir: string,
  opts: {
    numSeqs: number;
    contextLen: number;
    numThreads: number;
    numReps: number;
    weightDtype: string;
    activationDtype: string;
    kvCacheDtype: KvCacheDtype;
  },
): Promise<StepSplit> {
  const numBlocks = opts.numSeqs * Math.ceil(opts.contextLen / BLOCK_SIZE);
  const weightDtype = parseWeightDtype(opts.weightDtype);
  const gemm = gemmForWeightDtype(createGemm({ numThreads: opts.numThreads }), weightDtype, {
    numThreads: opts.numThreads,
    activations: parseActivationDtype(opts.activationDtype, weightDtype),
  });
  const runner = await loadCpuModelRunner(modelDir, {
    numBlocks,
    blockSize: BLOCK_SIZE,
    numThreads: opts.numThreads,
    gemm,
    kvCacheDtype: opts.kvCacheDtype,
  });
  const greedy: SampleRequest = {
    params: DEFAULT_SAMPLING,
    outputIndex: 0,
    promptTokenIds: [],
    outputTokenIds: [],
  };
  const vocabSize = runner.info.vocabSize;
  const input = decodeStep(opts.numSeqs, opts.contextLen, vocabSize, greedy);
  const stepMs = timeMs(() => runner.step(input), opts.numReps);
  const logits = runner.step({ ...input, returnLogits: true }).logits!;
  const scratch = createSamplingScratch(vocabSize);
  // The sampler the worker uses: native unless KILN_SAMPLING=typescript (services/worker).
  const sample =
    process.env.KILN_SAMPLING === "typescript" ? sampleRow : (tryNativeRowSampler() ?? sampleRow);
  const samplingMs = timeMs(() => {
    for (let s = 0; s < opts.numSeqs; s++) {
      sample(logits.subarray(s * vocabSize, (s + 1) * vocabSize), greedy, scratch);
    }
  }, opts.numReps);
  return {
    numSeqs: opts.numSeqs,
    contextLen: opts.contextLen,
    stepMs,
    samplingMs,
    kernelsMs: stepMs - samplingMs,
  };
}
