import type { DecodeSteps, SampledToken, SampleRequest, StepInput, StepOutput } from "./backend";

/**
 * Multi-step decode on the backend's thread (ADR 0028): after `first`, the output of `input`'s
 * step, runs each sequence's further decode steps with `stepOnce`, each step's input the token
 * the step before sampled, until every sequence ran its `numSteps` or sampled one of its
 * `stopTokenIds`. Returns `first` with `runs`. The steps are those the worker would send one by
 * one: positions and context lengths one further, the slot of the new position from the
 * sequence's block table (which holds every step's slots), the sample's output index one further
 * and its output ids grown by the tokens sampled since (penalties).
 */
export function runDecodeSteps(
  input: StepInput,
  first: StepOutput,
  blockSize: number,
  stepOnce: (input: StepInput) => StepOutput,
): StepOutput {
  const steps = input.decodeSteps;
  if (steps === undefined) return first;
  checkDecodesOnly(input, steps);
  const numSeqs = input.queryLens.length;
  const runs: SampledToken[][] = Array.from({ length: numSeqs }, () => []);
  const lastOf = (i: number): number => (runs[i]!.at(-1) ?? first.sampled[i]!).tokenId;
  for (let j = 1; ; j++) {
    const live: number[] = [];
    for (let i = 0; i < numSeqs; i++) {
      if (steps.numSteps[i]! > j && !steps.stopTokenIds[i]!.includes(lastOf(i))) live.push(i);
    }
    if (live.length === 0) return { ...first, runs };
    const emitted = (i: number) => [first.sampled[i]!, ...runs[i]!].map((t) => t.tokenId);
    const output = stepOnce(nextDecodeInput(input, live, j, blockSize, emitted));
    live.forEach((i, k) => {
      runs[i]!.push(output.sampled[k]!);
    });
  }
}

/** Throws unless every sequence of `input` is a decode that samples one token, unmasked. */
function checkDecodesOnly(input: StepInput, steps: DecodeSteps): void {
  const numSeqs = input.queryLens.length;
  if (steps.numSteps.length !== numSeqs || steps.stopTokenIds.length !== numSeqs) {
    throw new Error("decodeSteps: one entry per sequence");
  }
  for (let i = 0; i < numSeqs; i++) {
    const sample = input.samples[i];
    const isDecode =
      input.queryLens[i] === 1 &&
      sample != null &&
      (sample.draftTokenIds?.length ?? 0) === 0 &&
      sample.allowedTokenBitmask === undefined &&
      input.pooling?.[i] == null;
    if (!isDecode) throw new Error(`decodeSteps: sequence ${i} is not a plain decode`);
  }
}

/**
 * Step `j` of the sequences `live` (indices into `input`'s sequences, in order): each decodes
 * the token it sampled last, one position after step j − 1's.
 */
function nextDecodeInput(
  input: StepInput,
  live: readonly number[],
  j: number,
  blockSize: number,
  emitted: (i: number) => number[],
): StepInput {
  const n = live.length;
  const tokenIds = new Int32Array(n);
  const positions = new Int32Array(n);
  const contextLens = new Int32Array(n);
  const slotMapping = new Int32Array(n);
  const blockTableOffsets = new Int32Array(n + 1);
  const tables: Int32Array[] = [];
  const samples: SampleRequest[] = [];
  live.forEach((i, k) => {
    const position = input.contextLens[i]! - 1 + j;
    const table = input.blockTables.subarray(
      input.blockTableOffsets[i]!,
      input.blockTableOffsets[i + 1]!,
    );
    const block = table[Math.floor(position / blockSize)];
    if (block === undefined) {
      throw new Error(`decodeSteps: sequence ${i} holds no slot for position ${position}`);
    }
    const tokens = emitted(i);
    tokenIds[k] = tokens.at(-1)!;
    positions[k] = position;
    contextLens[k] = position + 1;
    slotMapping[k] = block * blockSize + (position % blockSize);
    tables.push(table);
    blockTableOffsets[k + 1] = blockTableOffsets[k]! + table.length;
    samples.push(nextSample(input.samples[i]!, j, tokens));
  });
  const blockTables = new Int32Array(blockTableOffsets[n]!);
  tables.forEach((table, k) => {
    blockTables.set(table, blockTableOffsets[k]!);
  });
  const loraSlots = input.loraSlots;
  return {
    tokenIds,
    positions,
    queryLens: new Int32Array(n).fill(1),
    contextLens,
    blockTableOffsets,
    blockTables,
    slotMapping,
    blockCopies: new Int32Array(0),
    samples,
    ...(loraSlots ? { loraSlots: Int32Array.from(live, (i) => loraSlots[i]!) } : {}),
  };
}

/** The sample of step `j`: the output index and ids moved on by the `emitted` tokens since. */
function nextSample(sample: SampleRequest, j: number, emitted: readonly number[]): SampleRequest {
  return {
    ...sample,
    outputIndex: sample.outputIndex + j,
    outputTokenIds: Array.from(sample.outputTokenIds).concat(emitted),
  };
}
