import { Rng } from "./rng";

/**
 * Benchmark workloads as token ids, modelled on vLLM's `benchmark_serving` datasets. Prompts
 * are token-exact: they are sent as token-id arrays, so every endpoint sees exactly
 * `promptIds.length` input tokens (no detokenize/retokenize drift).
 */

/** One request of a workload. `promptIds` starts with BOS when the vocabulary has one. */
export interface BenchRequest {
  readonly promptIds: readonly number[];
  readonly outputLen: number;
}

export interface VocabInfo {
  readonly vocabSize: number;
  /** Prepended to every prompt (and counted in its length); null for none. */
  readonly bosId: number | null;
  /** Ids below this are never sampled (Llama: 0 <unk>, 1 <s>, 2 </s>). */
  readonly firstSampledId: number;
}

export const LLAMA2_VOCAB: VocabInfo = { vocabSize: 32000, bosId: 1, firstSampledId: 3 };

export interface RandomDatasetOptions {
  readonly numPrompts: number;
  readonly inputLen: number;
  readonly outputLen: number;
  /** Lengths are uniform in [len × (1 − r), len × (1 + r)]; 0 makes every request identical in size. */
  readonly rangeRatio: number;
  readonly seed: number;
}

export interface PrefixRepetitionOptions {
  readonly numPrompts: number;
  readonly prefixLen: number;
  readonly suffixLen: number;
  readonly numPrefixes: number;
  readonly outputLen: number;
  readonly seed: number;
}

function randomIds(rng: Rng, vocab: VocabInfo, len: number): number[] {
  return Array.from({ length: len }, () => rng.int(vocab.firstSampledId, vocab.vocabSize - 1));
}

function withBos(vocab: VocabInfo, ids: number[]): number[] {
  return vocab.bosId === null ? ids : [vocab.bosId, ...ids];
}

function lengthIn(rng: Rng, len: number, rangeRatio: number): number {
  const lo = Math.max(1, Math.floor(len * (1 - rangeRatio)));
  const hi = Math.max(lo, Math.ceil(len * (1 + rangeRatio)));
  return rng.int(lo, hi);
}

/** `random`: independent random prompts; input length includes the BOS token. */
export function randomDataset(vocab: VocabInfo, opts: RandomDatasetOptions): BenchRequest[] {
  if (opts.rangeRatio < 0 || opts.rangeRatio >= 1) throw new Error("range ratio must be in [0, 1)");
  const rng = new Rng(opts.seed);
  const numBos = vocab.bosId === null ? 0 : 1;
  return Array.from({ length: opts.numPrompts }, () => {
    const inputLen = Math.max(numBos + 1, lengthIn(rng, opts.inputLen, opts.rangeRatio));
    return {
      promptIds: withBos(vocab, randomIds(rng, vocab, inputLen - numBos)),
      outputLen: lengthIn(rng, opts.outputLen, opts.rangeRatio),
    };
  });
}

/**
 * `prefix-repetition`: `numPrefixes` random prefixes of `prefixLen` tokens, each shared by
 * numPrompts / numPrefixes prompts that append their own `suffixLen` random tokens. Shuffled,
 * so a prefix-caching server sees interleaved repeats.
 */
export function prefixRepetitionDataset(
  vocab: VocabInfo,
  opts: PrefixRepetitionOptions,
): BenchRequest[] {
  if (opts.numPrefixes < 1) throw new Error("need at least one prefix");
  const rng = new Rng(opts.seed);
  const prefixes = Array.from({ length: opts.numPrefixes }, () =>
    withBos(vocab, randomIds(rng, vocab, opts.prefixLen)),
  );
  const requests = Array.from({ length: opts.numPrompts }, (_, i) => ({
    promptIds: [...prefixes[i % opts.numPrefixes]!, ...randomIds(rng, vocab, opts.suffixLen)],
    outputLen: opts.outputLen,
  }));
  return rng.shuffle(requests);
}
