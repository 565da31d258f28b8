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
  // Per sequence, its output ids so far: before this step, then every token sampled since.
  const outputs = input.samples.map((s, i) => [
    ...Array.from(s!.outputTokenIds),
    first.sampled[i]!.tokenId,
  ]);
  for (let j = 1; ; j++) {
    const live: number[] = [];
    for (let i = 0; i < numSeqs; i++) {
      const last = outputs[i]!.at(-1)!;
      if (steps.numSteps[i]! > j && !steps.stopTokenIds[i]!.includes(last)) live.push(i);
    }
    if (live.length === 0) return { ...first, runs };
    const output = stepOnce(nextDecodeInput(input, live, j, blockSize, outputs));
    live.forEach((i, k) => {
      const sampled = output.sampled[k]!;
      runs[i]!.push(sampled);
      outputs[i]!.push(sampled.tokenId);
    });
  }
}

/**
 * Whether every sequence of `input` is a decode that samples one token without drafts, pooling
 * or a grammar mask: what `StepInput.decodeSteps` may extend.
 */
export function isPlainDecodeInput(input: StepInput): boolean {
  return input.samples.every(
    (sample, i) =>
      input.queryLens[i] === 1 &&
      sample != null &&
      (sample.draftTokenIds?.length ?? 0) === 0 &&
      sample.allowedTokenBitmask === undefined &&
      input.pooling?.[i] == null,
  );
}

/** Throws unless `steps` has an entry per sequence and every sequence is a plain decode. */
function checkDecodesOnly(input: StepInput, steps: DecodeSteps): void {
  const numSeqs = input.queryLens.length;
  if (steps.numSteps.length !== numSeqs || steps.stopTokenIds.length !== numSeqs) {
    throw new Error("decodeSteps: one entry per sequence");
  }
  if (input.samples.length !== numSeqs || !isPlainDecodeInput(input)) {
    throw new Error("decodeSteps: not every sequence is a plain decode");
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
  outputs: readonly (readonly number[])[],
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
    const output = outputs[i]!;
    tokenIds[k] = output.at(-1)!;
    positions[k] = position;
    contextLens[k] = position + 1;
    slotMapping[k] = block * blockSize + (position % blockSize);
    tables.push(table);
    blockTableOffsets[k + 1] = blockTableOffsets[k]! + table.length;
    // A copy: the step may keep its input (a tensor-parallel leader sends it on).
    samples.push({
      ...input.samples[i]!,
      outputIndex: input.samples[i]!.outputIndex + j,
      outputTokenIds: output.slice(),
    });
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
