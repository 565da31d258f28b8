import { type LlamaConfig, type LoadedModel, loadModel } from "@kiln/model";
import { loadGoldenCases, mulberry32, STORIES_DIR } from "@kiln/test-support";
import { beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_SAMPLING, type SampleRequest, type SamplingParams } from "../../src/backend";
import { referenceForward } from "../../src/reference/llama-reference";
import type { BackendUnderTest, DisposableStepper } from "./backends";
import { maxRelativeError, randomWeights, tinyConfig } from "./random-model";
import { buildStepInput, greedyGenerate, type ScheduledChunk } from "./step-driver";

// One suite, every backend (ADR 0019): backend-suite.cpu.test.ts and backend-suite.webgpu.test.ts
// each call defineBackendSuite (separate files, so Dawn's threads and the CPU addon's OpenMP team
// never share a test process): the stories260K goldens token for token through batching,
// chunking, block sizes, preemption and copy-on-write. The WebGPU run uses Dawn over llvmpipe in
// CI (slow), so most cases check a prefix of the 64 golden tokens: a prefix of a greedy
// continuation is itself the golden continuation of that length.

const cases = loadGoldenCases();
const prompts = cases.map((c) => c.prompt_ids);
const golden = (n: number) => cases.map((c) => c.greedy_ids.slice(0, n));

let model: LoadedModel;

const greedy = (outputIndex: number): SampleRequest => ({
  params: DEFAULT_SAMPLING,
  outputIndex,
  promptTokenIds: [],
  outputTokenIds: [],
});

async function withRunner<T>(
  b: BackendUnderTest,
  shape: { numBlocks: number; blockSize: number },
  use: (r: DisposableStepper) => Promise<T>,
): Promise<T> {
  const runner = await b.create(model.config, model.weights, shape);
  try {
    return await use(runner);
  } finally {
    runner.dispose();
  }
}

async function generate(
  b: BackendUnderTest,
  opts: { blockSize: number; isBatched: boolean; chunkLen?: number },
  numNewTokens: number,
  inputs: readonly (readonly number[])[] = prompts,
) {
  const maxLen = Math.max(...inputs.map((p) => p.length)) + numNewTokens;
  const numBlocks = inputs.length * Math.ceil(maxLen / opts.blockSize) + 3;
  return withRunner(b, { numBlocks, blockSize: opts.blockSize }, (r) =>
    greedyGenerate(r, inputs, { ...opts, numBlocks, maxNewTokens: numNewTokens }),
  );
}

/**
 * Registers the suite for `b`. `reference` is the CPU backend: seeded sampling on `b` must give
 * its tokens (pass `b` itself for the CPU run).
 */
export function defineBackendSuite(b: BackendUnderTest, reference: BackendUnderTest): void {
  beforeAll(async () => {
    model = await loadModel(STORIES_DIR);
  });
  describe(`${b.name} backend: stories260K goldens`, () => goldenSuite(b));
  describe(`${b.name} backend: sampling`, () => samplingSuite(b, reference));
  describe(`${b.name} backend: the float64 reference`, () => referenceSuite(b));
}

/**
 * GQA attention through the whole forward pass against the dense float64 reference, on random
 * weights: two sequences in the same steps, prefill chunks of 6 and 4 tokens then decodes, the
 * logits of every sampled row compared.
 */
function referenceSuite(b: BackendUnderTest): void {
  const configs: [string, LlamaConfig, number][] = [
    ["GQA 2 (4 heads over 2 KV heads), block size 4", tinyConfig(), 4],
    [
      "GQA 4 (8 heads over 2), headDim 16, block size 1",
      tinyConfig({ numHeads: 8, headDim: 16 }),
      1,
    ],
    ["MHA, block size 16", tinyConfig({ numKvHeads: 4 }), 16],
  ];
  it.each(configs)("%s", async (_name, cfg, blockSize) => {
    const weights = randomWeights(cfg, 42);
    const rand = mulberry32(9);
    const tokens = [0, 1].map(() =>
      Array.from({ length: 14 }, () => Math.floor(rand() * cfg.vocabSize)),
    );
    const expected = tokens.map((t) => referenceForward(cfg, weights, t));
    // Interleaved, descending and ascending ids: never contiguous, never shared.
    const blocks = [
      Array.from({ length: 14 }, (_, i) => 38 - 2 * i),
      Array.from({ length: 14 }, (_, i) => 2 * i + 1),
    ];
    const runner = await b.create(cfg, weights, { numBlocks: 40, blockSize });
    let worst = 0;
    try {
      let start = 0;
      for (const len of [6, 4, 1, 1, 1, 1]) {
        const chunks: ScheduledChunk[] = tokens.map((t, s) => ({
          tokenIds: t.slice(start, start + len),
          startPos: start,
          blocks: blocks[s]!.slice(0, Math.ceil((start + len) / blockSize)),
          sample: greedy(0),
        }));
        const out = await runner.step({ ...buildStepInput(chunks, blockSize), returnLogits: true });
        const v = cfg.vocabSize;
        const pos = start + len - 1;
        for (let s = 0; s < 2; s++) {
          const actual = out.logits!.subarray(s * v, (s + 1) * v);
          const want = expected[s]!.subarray(pos * v, (pos + 1) * v);
          worst = Math.max(worst, maxRelativeError(actual, want));
        }
        start += len;
      }
    } finally {
      runner.dispose();
    }
    expect(worst).toBeLessThan(1e-4);
  });
}

function goldenSuite(b: BackendUnderTest): void {
  const numLong = 64;
  it(`all cases in one batch, ${numLong} tokens`, async () => {
    expect(await generate(b, { blockSize: 16, isBatched: true }, numLong)).toEqual(golden(numLong));
  });

  it("one sequence at a time", async () => {
    expect(await generate(b, { blockSize: 16, isBatched: false }, 12)).toEqual(golden(12));
  });

  // Chunks of 5: the 5-token prompts decode while the 12-token one still prefills (mixed steps).
  it.each([1, 4, 16])("block size %i, prefill chunks of 5 mixed with decodes", async (bs) => {
    const out = await generate(b, { blockSize: bs, isBatched: true, chunkLen: 5 }, 20);
    expect(out).toEqual(golden(20));
  });

  it("recomputes after a preemption into reused, stale blocks", async () => {
    // Generate 8 tokens, drop the sequence's blocks, then prefill prompt + those 8 again in
    // chunks of 6 into the same (now stale) block ids and continue.
    const blockSize = 4;
    const numBlocks = 3 * 12;
    const out = await withRunner(b, { numBlocks, blockSize }, async (r) => {
      const first = await greedyGenerate(r, prompts, {
        blockSize,
        numBlocks,
        maxNewTokens: 8,
        isBatched: true,
      });
      const resumed = prompts.map((p, i) => [...p, ...first[i]!]);
      const rest = await greedyGenerate(r, resumed, {
        blockSize,
        numBlocks,
        maxNewTokens: 12,
        isBatched: true,
        chunkLen: 6,
      });
      return first.map((f, i) => [...f, ...rest[i]!]);
    });
    expect(out).toEqual(golden(20));
  });

  it("forks a sequence with a copy-on-write block copy and a rejected step changes nothing", async () => {
    const blockSize = 4;
    const prompt = prompts[0]!; // 5 tokens: block 7 full, block 3 holds one token
    const expected = cases[0]!.greedy_ids.slice(0, 10);
    const out = await withRunner(b, { numBlocks: 32, blockSize }, async (r) => {
      const chunk = (tokens: number[], start: number, blocks: number[], i: number) =>
        ({ tokenIds: tokens, startPos: start, blocks, sample: greedy(i) }) as ScheduledChunk;
      const first = await r.step(buildStepInput([chunk(prompt, 0, [7, 3], 0)], blockSize));
      const a = [first.sampled[0]!.tokenId];
      const f = [a[0]!];
      const tablesA = [7, 3];
      const tablesF = [7, 12]; // shares the full block 7, copies the partial block 3 into 12
      // A step naming a block outside the pool is rejected before anything is written.
      const bad = buildStepInput([chunk([a[0]!], 5, [7, 99], 1)], blockSize);
      await expect(Promise.resolve().then(() => r.step(bad))).rejects.toThrow(/invalid step input/);
      let copies = Int32Array.of(3, 12);
      for (let i = 1; i < expected.length; i++) {
        const pos = prompt.length + i - 1;
        for (const t of [tablesA, tablesF])
          if (t.length * blockSize <= pos) t.push(t === tablesA ? 13 + i : 4 + i);
        const input = buildStepInput(
          [chunk([a[i - 1]!], pos, [...tablesA], i), chunk([f[i - 1]!], pos, [...tablesF], i)],
          blockSize,
        );
        const res = await r.step({ ...input, blockCopies: copies });
        copies = new Int32Array(0);
        a.push(res.sampled[0]!.tokenId);
        f.push(res.sampled[1]!.tokenId);
      }
      return [a, f];
    });
    expect(out).toEqual([expected, expected]);
  });
}

function samplingSuite(b: BackendUnderTest, cpu: BackendUnderTest): void {
  const params: SamplingParams = {
    ...DEFAULT_SAMPLING,
    temperature: 0.9,
    topK: 40,
    topP: 0.9,
    minP: 0.02,
    seed: 1234,
    numTopLogprobs: 3,
  };

  /** 12 seeded tokens of case 1 and the greedy logprob of its first token, with logits. */
  async function sampleTwelve(backend: BackendUnderTest) {
    const prompt = prompts[1]!;
    return withRunner(backend, { numBlocks: 8, blockSize: 16 }, async (r) => {
      const tokens = [...prompt];
      const logprobs: number[] = [];
      for (let i = 0; i < 12; i++) {
        const start = i === 0 ? 0 : tokens.length - 1;
        const sample: SampleRequest = { ...greedy(i), params };
        const chunk = { tokenIds: tokens.slice(start), startPos: start, blocks: [5, 6], sample };
        const out = await r.step(buildStepInput([chunk], 16));
        tokens.push(out.sampled[0]!.tokenId);
        logprobs.push(out.sampled[0]!.logprob);
        expect(out.sampled[0]!.topLogprobs).toHaveLength(3);
      }
      return { tokens: tokens.slice(prompt.length), logprobs };
    });
  }

  it("seeded top-k/top-p/min-p sampling gives the CPU backend's tokens", async () => {
    const expected = await sampleTwelve(cpu);
    const actual = b === cpu ? expected : await sampleTwelve(b);
    expect(actual.tokens).toEqual(expected.tokens);
    for (const [i, lp] of actual.logprobs.entries()) {
      expect(lp).toBeCloseTo(expected.logprobs[i]!, 4);
    }
    // The seed matters: greedy decoding of this prompt is the golden, the sampled run is not.
    expect(actual.tokens).not.toEqual(cases[1]!.greedy_ids.slice(0, 12));
  });

  it("greedy logprobs agree with log_softmax of the returned logits", async () => {
    const out = await withRunner(b, { numBlocks: 4, blockSize: 16 }, async (r) =>
      r.step({
        ...buildStepInput(
          [
            { tokenIds: prompts[0]!, startPos: 0, blocks: [1], sample: greedy(0) },
            { tokenIds: prompts[1]!, startPos: 0, blocks: [2], sample: null },
            { tokenIds: prompts[2]!, startPos: 0, blocks: [0], sample: greedy(0) },
          ],
          16,
        ),
        returnLogits: true,
      }),
    );
    const vocab = model.config.vocabSize;
    expect(out.sampled[1]).toBeNull();
    expect(out.logits).toHaveLength(2 * vocab);
    for (const [row, seq] of [
      [0, 0],
      [1, 2],
    ] as const) {
      const logits = out.logits!.subarray(row * vocab, (row + 1) * vocab);
      let max = -Infinity;
      let argmax = 0;
      logits.forEach((l, i) => {
        if (l > max) [max, argmax] = [l, i];
      });
      let sum = 0;
      for (const l of logits) sum += Math.exp(l - max);
      expect(out.sampled[seq]!.tokenId).toBe(argmax);
      expect(out.sampled[seq]!.tokenId).toBe(cases[seq]!.greedy_ids[0]);
      expect(out.sampled[seq]!.logprob).toBeCloseTo(-Math.log(sum), 5);
    }
  });
}
