import { readdirSync } from "node:fs";
import { loadGoldenCases, STORIES_DIR } from "@kiln/test-support";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Backend, DEFAULT_SAMPLING, type SampleRequest } from "../src/backend";
import { createCpuBackend } from "../src/cpu/cpu-backend";
import { buildStepInput, greedyGenerate } from "./helpers/step-driver";

const GREEDY: SampleRequest = {
  params: DEFAULT_SAMPLING,
  outputIndex: 0,
  promptTokenIds: [],
  outputTokenIds: [],
};

/** OS threads of this process (Linux): a worker thread is one of them. */
function numThreads(): number {
  return readdirSync("/proc/self/task").length;
}

describe("createCpuBackend (worker thread)", () => {
  let backend: Backend;
  beforeAll(async () => {
    // One gemm thread: the matrices are tiny, and the test machine's cores are shared.
    backend = await createCpuBackend({
      modelDir: STORIES_DIR,
      numBlocks: 160,
      blockSize: 16,
      numThreads: 1,
    });
  });
  afterAll(async () => {
    await backend.dispose();
  });

  it("reports its capacity", () => {
    expect(backend.info).toEqual({
      name: "cpu",
      numBlocks: 160,
      blockSize: 16,
      vocabSize: 512,
      maxModelLen: 512,
      // The tier the thread's GEMM runs (ADR 0022): oneDNN when it loads, else the addon's own.
      kernelTier: expect.stringMatching(
        /^(onednn|native-(avx512|avx2|scalar)|wasm-simd|typescript)$/,
      ),
      acceptsDeferredMasks: true,
      runsDecodeSteps: true,
      kvCacheDtype: "f32",
    });
  });

  it("samples under grammar masks filled after the step was posted, and fails on a failed fill", async () => {
    const words = new Int32Array(new SharedArrayBuffer(4 * 16)); // 512 tokens
    const masksReady = new Int32Array(new SharedArrayBuffer(4));
    const input = buildStepInput(
      [{ tokenIds: [1, 403, 407], startPos: 0, blocks: [9], sample: GREEDY }],
      16,
    );
    const withMask = (ready: Int32Array) => ({
      ...input,
      samples: [{ ...GREEDY, allowedTokenBitmask: words }],
      masksReady: ready,
    });
    const free = await backend.step(input);
    const freeToken = free.sampled[0]!.tokenId;
    const allowed = (freeToken + 1) % 512; // anything but the unconstrained choice
    const stepping = backend.step(withMask(masksReady));
    await new Promise((resolve) => setTimeout(resolve, 50)); // the thread waits meanwhile
    words[allowed >> 5] = 1 << (allowed & 31);
    Atomics.store(masksReady, 0, 1);
    Atomics.notify(masksReady, 0);
    expect((await stepping).sampled[0]!.tokenId).toBe(allowed);
    const failed = new Int32Array(new SharedArrayBuffer(4));
    Atomics.store(failed, 0, 2);
    await expect(backend.step(withMask(failed))).rejects.toThrow(/grammar masks failed/);
  });

  it("reproduces a golden continuation with batched, chunked prefill", async () => {
    const cases = loadGoldenCases();
    const generated = await greedyGenerate(
      backend,
      cases.map((c) => c.prompt_ids),
      { blockSize: 16, numBlocks: 64, maxNewTokens: 64, chunkLen: 7, isBatched: true },
    );
    expect(generated).toEqual(cases.map((c) => c.greedy_ids));
  });

  it("rejects an invalid step with a clear error and keeps working", async () => {
    const good = buildStepInput(
      [{ tokenIds: [1, 403, 407], startPos: 0, blocks: [5], sample: GREEDY }],
      16,
    );
    const badBlock = { ...good, blockTables: Int32Array.from([160]) };
    await expect(backend.step(badBlock)).rejects.toThrow(/block id .*160 is out of range/);
    const badLens = { ...good, queryLens: Int32Array.from([2]) };
    await expect(backend.step(badLens)).rejects.toThrow(/invalid step input/);
    const out = await backend.step({ ...good, returnLogits: true });
    expect(out.sampled[0]?.tokenId).toBeTypeOf("number");
    expect(out.logits?.length).toBe(512);
  });

  it("rejects overlapping steps", async () => {
    const input = buildStepInput([{ tokenIds: [1], startPos: 0, blocks: [7], sample: null }], 16);
    const first = backend.step(input);
    await expect(backend.step(input)).rejects.toThrow(/already running/);
    await expect(first).resolves.toEqual({ sampled: [null] });
  });

  it("keeps the caller's event loop running during a long step", async () => {
    // Four 512-token prefills: a few hundred milliseconds of compute in the thread.
    const tokenIds = Array.from({ length: 512 }, (_, i) => 3 + ((i * 7) % 500));
    const chunks = [0, 1, 2, 3].map((s) => ({
      tokenIds,
      startPos: 0,
      blocks: Array.from({ length: 32 }, (_, i) => 32 + 32 * s + i),
      sample: GREEDY,
    }));
    const input = buildStepInput(chunks, 16);
    let numTicks = 0;
    const timer = setInterval(() => numTicks++, 5);
    const started = performance.now();
    await backend.step(input);
    const elapsedMs = performance.now() - started;
    clearInterval(timer);
    expect(elapsedMs).toBeGreaterThan(40);
    expect(numTicks).toBeGreaterThanOrEqual(3);
  });
});

describe("CpuBackend lifecycle", () => {
  it("dispose() terminates the thread and later steps reject", async () => {
    const before = numThreads();
    const backend = await createCpuBackend({ modelDir: STORIES_DIR, numBlocks: 4 });
    expect(numThreads()).toBeGreaterThan(before);
    await backend.dispose();
    // The thread's OpenMP helpers (gemm, attention) exit shortly after it does.
    for (let i = 0; i < 50 && numThreads() > before; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(numThreads()).toBe(before);
    const input = buildStepInput([{ tokenIds: [1], startPos: 0, blocks: [0], sample: null }], 16);
    await expect(backend.step(input)).rejects.toThrow(/disposed/);
  });

  it("rejects creation when the model cannot be loaded", async () => {
    await expect(
      createCpuBackend({ modelDir: "/nonexistent/model", numBlocks: 4 }),
    ).rejects.toThrow();
  });
});
