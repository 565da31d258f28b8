import {
  DEFAULT_SAMPLING,
  type SampleRequest,
  type StepInput,
  type StepOutput,
} from "../../src/backend";

/**
 * A tiny stand-in for the engine-core scheduler, for backend tests: hands out block ids in a
 * scrambled but deterministic order (so block tables are never contiguous) and builds
 * StepInputs for a set of greedy sequences.
 */
export class ScrambledBlockAllocator {
  private readonly order: number[];
  private next = 0;

  constructor(numBlocks: number) {
    // Stride through the ids with a step coprime to numBlocks, starting from the top.
    let stride = Math.max(1, Math.floor(numBlocks * 0.618));
    while (gcd(stride, numBlocks) !== 1) stride++;
    this.order = Array.from(
      { length: numBlocks },
      (_, i) => (((numBlocks - 1 - i * stride) % numBlocks) + numBlocks) % numBlocks,
    );
  }

  allocate(): number {
    const id = this.order[this.next++];
    if (id === undefined) throw new Error("test allocator ran out of blocks");
    return id;
  }
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

/** Anything with a Backend-like step (the in-thread runner returns synchronously). */
export interface Stepper {
  step(input: StepInput): StepOutput | Promise<StepOutput>;
}

export interface ScheduledChunk {
  readonly tokenIds: readonly number[];
  /** Position of tokenIds[0]; all earlier positions are already in the KV cache. */
  readonly startPos: number;
  readonly blocks: readonly number[];
  readonly sample: SampleRequest | null;
}

/** Flattens chunks into a StepInput, deriving positions and slots from the block tables. */
export function buildStepInput(chunks: readonly ScheduledChunk[], blockSize: number): StepInput {
  const tokenIds: number[] = [];
  const positions: number[] = [];
  const slots: number[] = [];
  const tables: number[] = [];
  const offsets = [0];
  for (const c of chunks) {
    for (let i = 0; i < c.tokenIds.length; i++) {
      const pos = c.startPos + i;
      tokenIds.push(c.tokenIds[i]!);
      positions.push(pos);
      slots.push(c.blocks[Math.floor(pos / blockSize)]! * blockSize + (pos % blockSize));
    }
    tables.push(...c.blocks);
    offsets.push(tables.length);
  }
  return {
    tokenIds: Int32Array.from(tokenIds),
    positions: Int32Array.from(positions),
    queryLens: Int32Array.from(chunks.map((c) => c.tokenIds.length)),
    contextLens: Int32Array.from(chunks.map((c) => c.startPos + c.tokenIds.length)),
    blockTableOffsets: Int32Array.from(offsets),
    blockTables: Int32Array.from(tables),
    slotMapping: Int32Array.from(slots),
    blockCopies: new Int32Array(0),
    samples: chunks.map((c) => c.sample),
  };
}

export interface GreedyRunOptions {
  readonly blockSize: number;
  readonly numBlocks: number;
  readonly maxNewTokens: number;
  /** Prefill at most this many prompt tokens per step (unlimited by default). */
  readonly chunkLen?: number;
  /** Run every prompt in the same steps (true) or one after the other (false). */
  readonly isBatched: boolean;
}

interface SeqState {
  readonly tokens: number[];
  readonly promptLen: number;
  readonly blocks: number[];
  numCached: number;
}

/** Greedy-decodes every prompt and returns the generated ids of each. */
export async function greedyGenerate(
  stepper: Stepper,
  prompts: readonly (readonly number[])[],
  opts: GreedyRunOptions,
): Promise<number[][]> {
  const allocator = new ScrambledBlockAllocator(opts.numBlocks);
  const seqs: SeqState[] = prompts.map((p) => ({
    tokens: [...p],
    promptLen: p.length,
    blocks: [],
    numCached: 0,
  }));
  const isDone = (s: SeqState) => s.tokens.length - s.promptLen >= opts.maxNewTokens;
  const groups = opts.isBatched ? [seqs] : seqs.map((s) => [s]);
  for (const group of groups) {
    for (let active = group.filter((s) => !isDone(s)); active.length > 0; ) {
      const chunks = active.map((s) => scheduleChunk(s, opts, allocator));
      const out = await stepper.step(buildStepInput(chunks, opts.blockSize));
      active.forEach((s, i) => {
        s.numCached += chunks[i]!.tokenIds.length;
        const sampled = out.sampled[i];
        if (sampled) s.tokens.push(sampled.tokenId);
      });
      active = active.filter((s) => !isDone(s));
    }
  }
  return seqs.map((s) => s.tokens.slice(s.promptLen));
}

function scheduleChunk(
  s: SeqState,
  opts: GreedyRunOptions,
  allocator: ScrambledBlockAllocator,
): ScheduledChunk {
  const chunkLimit = opts.chunkLen ?? Number.POSITIVE_INFINITY;
  const numNew = Math.min(s.tokens.length - s.numCached, chunkLimit);
  const end = s.numCached + numNew;
  while (s.blocks.length * opts.blockSize < end) s.blocks.push(allocator.allocate());
  const isLast = end === s.tokens.length;
  return {
    tokenIds: s.tokens.slice(s.numCached, end),
    startPos: s.numCached,
    blocks: [...s.blocks],
    sample: isLast
      ? {
          params: DEFAULT_SAMPLING,
          outputIndex: s.tokens.length - s.promptLen,
          promptTokenIds: [],
          outputTokenIds: [],
        }
      : null,
  };
}

/**
 * Mean negative log-likelihood of each case's golden continuation, teacher-forced one token per
 * step (blocks 0.. of the stepper's pool; its perplexity is exp of this).
 */
export async function goldenNll(
  stepper: Stepper,
  cases: readonly {
    readonly prompt_ids: readonly number[];
    readonly greedy_ids: readonly number[];
  }[],
  blockSize: number,
): Promise<number> {
  let sum = 0;
  let count = 0;
  for (const c of cases) {
    const tokens = [...c.prompt_ids, ...c.greedy_ids];
    const blocks = Array.from({ length: Math.ceil(tokens.length / blockSize) }, (_, i) => i);
    let start = 0;
    for (let end = c.prompt_ids.length; end < tokens.length; end++) {
      const sample = {
        params: DEFAULT_SAMPLING,
        outputIndex: 0,
        promptTokenIds: [],
        outputTokenIds: [],
      };
      const input = buildStepInput(
        [{ tokenIds: tokens.slice(start, end), startPos: start, blocks, sample }],
        blockSize,
      );
      const logits = (await stepper.step({ ...input, returnLogits: true })).logits!;
      let max = Number.NEGATIVE_INFINITY;
      for (const x of logits) max = Math.max(max, x);
      let z = 0;
      for (const x of logits) z += Math.exp(x - max);
      sum += max + Math.log(z) - logits[tokens[end]!]!;
      count++;
      start = end;
    }
  }
  return sum / count;
}
