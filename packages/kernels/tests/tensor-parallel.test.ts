import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeRandomModel } from "@kiln/model";
import { loadGoldenCases, requireAvailable, STORIES_DIR } from "@kiln/test-support";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Backend } from "../src/backend";
import { createCpuBackend } from "../src/cpu/cpu-backend";
import { tryLoadNativeAddon } from "../src/cpu/native-addon";
import { greedyGenerate } from "./helpers/step-driver";

// The collectives live in the kiln_gemm addon; CI=true requires it.
const hasCollectives = requireAvailable(
  "the shm collectives (kiln_gemm addon)",
  (tryLoadNativeAddon() as { shm?: unknown } | null)?.shm !== undefined,
  "build it: npm run build -w @kiln/kernels",
);

// Every rank runs in a worker thread of this process; the group talks through a real POSIX
// shared-memory segment and the native all-reduce, exactly as separate worker processes do.

const BLOCKS = { blockSize: 16, numBlocks: 64 };
let nextGroup = 0;

// A terminated backend thread never unmaps: remove this run's segments (Linux: /dev/shm).
afterAll(() => {
  for (const name of readdirSync("/dev/shm")) {
    if (name.startsWith(`kiln-tp-test-${process.pid}-`)) rmSync(join("/dev/shm", name));
  }
});

async function startGroup(modelDir: string, size: number, timeoutMs = 5000): Promise<Backend[]> {
  const groupId = `test-${process.pid}-${nextGroup++}`;
  return Promise.all(
    Array.from({ length: size }, (_, rank) =>
      createCpuBackend({
        modelDir,
        ...BLOCKS,
        numThreads: 1,
        tensorParallel: { groupId, rank, size, timeoutMs },
      }),
    ),
  );
}

async function stopGroup(group: readonly Backend[]): Promise<void> {
  await Promise.all(group.map((b) => b.dispose()));
}

describe.skipIf(!hasCollectives)(
  "tensor-parallel groups reproduce the golden continuations",
  () => {
    const cases = loadGoldenCases();
    const prompts = cases.map((c) => c.prompt_ids);
    const expected = cases.map((c) => c.greedy_ids);

    for (const size of [2, 4]) {
      it(`T = ${size}: batched with chunked prefill, and one sequence at a time`, async () => {
        const group = await startGroup(STORIES_DIR, size);
        try {
          const opts = { ...BLOCKS, maxNewTokens: expected[0]!.length, chunkLen: 7 };
          expect(await greedyGenerate(group[0]!, prompts, { ...opts, isBatched: true })).toEqual(
            expected,
          );
          // One sequence at a time (fewer prompts at T = 4: four ranks share two cores here).
          const numAlone = size === 2 ? 2 : 1;
          const alone = await greedyGenerate(group[0]!, prompts.slice(0, numAlone), {
            ...opts,
            isBatched: false,
          });
          expect(alone).toEqual(expected.slice(0, numAlone));
        } finally {
          await stopGroup(group);
        }
      });
    }
  },
);

describe.skipIf(!hasCollectives)(
  "tensor parallelism on a GQA shape (8 query heads, 2 KV heads)",
  () => {
    let dir: string;
    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), "kiln-tp-gqa-"));
      const shape = {
        hiddenSize: 64,
        numLayers: 2,
        numHeads: 8,
        numKvHeads: 2,
        intermediateSize: 96,
        vocabSize: 512,
        maxPositionEmbeddings: 256,
      };
      await writeRandomModel(dir, shape, { seed: 13, tokenizerDir: null });
    });
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it("T = 4 (2 KV heads replicated over 4 ranks) matches T = 1", async () => {
      const prompts = [
        [1, 17, 300, 42, 5, 99, 7, 8, 250, 11, 12, 13, 14, 15, 16, 400, 33],
        [1, 200, 201],
      ];
      const opts = { ...BLOCKS, maxNewTokens: 12, chunkLen: 5, isBatched: true };
      const single = await createCpuBackend({ modelDir: dir, ...BLOCKS, numThreads: 1 });
      const reference = await greedyGenerate(single, prompts, opts).finally(() => single.dispose());
      // (T = 2 splits these KV heads, as the golden tests at T = 2 and 4 do for stories260K.)
      const group = await startGroup(dir, 4);
      try {
        expect(await greedyGenerate(group[0]!, prompts, opts)).toEqual(reference);
      } finally {
        await stopGroup(group);
      }
    });

    it("refuses a split that cannot work with a clear error", async () => {
      await expect(
        createCpuBackend({
          modelDir: dir,
          ...BLOCKS,
          tensorParallel: { groupId: `bad-${process.pid}`, rank: 0, size: 3, timeoutMs: 100 },
        }),
      ).rejects.toThrow(/8 attention heads do not split over 3 ranks/);
    });
  },
);

describe.skipIf(!hasCollectives)("a lost rank", () => {
  it("fails the step instead of hanging, and the group recovers once the rank is back", async () => {
    const group = await startGroup(STORIES_DIR, 2, 1500);
    const [leader, follower] = group as [Backend, Backend];
    const prompt = [loadGoldenCases()[0]!.prompt_ids];
    const expected = [loadGoldenCases()[0]!.greedy_ids.slice(0, 4)];
    const opts = { ...BLOCKS, maxNewTokens: 4, isBatched: true };
    try {
      expect(await greedyGenerate(leader, prompt, opts)).toEqual(expected);
      await follower.dispose();
      const startedAt = performance.now();
      await expect(greedyGenerate(leader, prompt, opts)).rejects.toThrow(
        /tensor-parallel rank.* (did not join|lost)/,
      );
      expect(performance.now() - startedAt).toBeLessThan(5000);
      const groupId = `test-${process.pid}-${nextGroup - 1}`;
      group[1] = await createCpuBackend({
        modelDir: STORIES_DIR,
        ...BLOCKS,
        numThreads: 1,
        tensorParallel: { groupId, rank: 1, size: 2, timeoutMs: 1500 },
      });
      expect(await greedyGenerate(leader, prompt, opts)).toEqual(expected);
    } finally {
      await stopGroup(group);
    }
  });
});
