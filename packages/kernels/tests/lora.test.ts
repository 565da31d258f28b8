import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type LoadedModel, loadLoraAdapter, loadModel, writeRandomLoraAdapter } from "@kiln/model";
import { LORA_A_DIR, LORA_A_GOLDEN_PATH, loadGoldenCases, STORIES_DIR } from "@kiln/test-support";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_SAMPLING } from "../src/backend";
import { CpuModelRunner } from "../src/cpu/model-runner";
import { buildStepInput, type ScheduledChunk } from "./helpers/step-driver";

// Batched LoRA (ADR 0015): each sequence's tokens get their own slot's delta, never merged
// weights; the result equals the float64 merged reference and each adapter run alone.

const cases = loadGoldenCases(LORA_A_GOLDEN_PATH);
const BLOCK = 16;
const NEW_TOKENS = 24;
let model: LoadedModel;
let tmp: string;

beforeAll(async () => {
  model = await loadModel(STORIES_DIR);
  tmp = await mkdtemp(join(tmpdir(), "kiln-lora-"));
  await writeRandomLoraAdapter(join(tmp, "r1"), model.config, { rank: 4, seed: 1 });
  // A different rank, and q/v only.
  await writeRandomLoraAdapter(join(tmp, "r2"), model.config, {
    rank: 8,
    seed: 2,
    targets: ["q_proj", "v_proj"],
  });
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** Greedy-generates every prompt in one batch; slots[i] is prompt i's LoRA slot (-1 = base). */
function greedy(runner: CpuModelRunner, prompts: number[][], slots: number[], n: number) {
  const maxBlocks = Math.ceil(80 / BLOCK);
  const seqs = prompts.map((p, i) => ({
    ids: [...p],
    done: 0,
    blocks: Array.from({ length: maxBlocks }, (_, b) => i * maxBlocks + b),
  }));
  const sample = {
    params: DEFAULT_SAMPLING,
    outputIndex: 0,
    promptTokenIds: [],
    outputTokenIds: [],
  };
  for (let step = 0; step < n; step++) {
    const chunks: ScheduledChunk[] = seqs.map((s) => ({
      tokenIds: s.ids.slice(s.done),
      startPos: s.done,
      blocks: s.blocks,
      sample,
    }));
    const input = { ...buildStepInput(chunks, BLOCK), loraSlots: Int32Array.from(slots) };
    const out = runner.step(input);
    seqs.forEach((s, i) => {
      s.done = s.ids.length;
      s.ids.push(out.sampled[i]!.tokenId);
    });
  }
  return seqs.map((s, i) => s.ids.slice(prompts[i]!.length));
}

function makeRunner(maxLoras: number): CpuModelRunner {
  return new CpuModelRunner(model.config, model.weights, {
    numBlocks: 64,
    blockSize: BLOCK,
    maxLoras,
    numThreads: 1,
  });
}

describe("batched LoRA on the CPU runner", () => {
  it("reproduces the stories260K-lora-a golden (merged float64 reference)", async () => {
    const runner = makeRunner(2);
    runner.lora.load(1, await loadLoraAdapter(LORA_A_DIR, model.config, 64));
    const prompts = cases.map((c) => [...c.prompt_ids]);
    const out = greedy(
      runner,
      prompts,
      prompts.map(() => 1),
      NEW_TOKENS,
    );
    expect(out).toEqual(cases.map((c) => c.greedy_ids.slice(0, NEW_TOKENS)));
  });

  it("a mixed batch (base, lora-a, random) equals each run alone", async () => {
    const runner = makeRunner(2);
    runner.lora.load(0, await loadLoraAdapter(LORA_A_DIR, model.config, 64));
    runner.lora.load(1, await loadLoraAdapter(join(tmp, "r1"), model.config, 64));
    const prompt = [...cases[0]!.prompt_ids];
    const alone = [-1, 0, 1].map((slot) => greedy(runner, [prompt], [slot], 40)[0]);
    // Every adapter changes the output.
    expect(new Set(alone.map((ids) => JSON.stringify(ids))).size).toBe(3);
    const mixed = greedy(runner, [prompt, prompt, prompt, prompt], [1, -1, 0, 1], 40);
    expect(mixed).toEqual([alone[2], alone[0], alone[1], alone[2]]);
  });

  it("many adapters in one step equal each run alone", async () => {
    const runner = makeRunner(4);
    runner.lora.load(0, await loadLoraAdapter(LORA_A_DIR, model.config, 64));
    runner.lora.load(1, await loadLoraAdapter(join(tmp, "r1"), model.config, 64));
    runner.lora.load(3, await loadLoraAdapter(join(tmp, "r2"), model.config, 64));
    const prompts = cases.slice(0, 2).map((c) => [...c.prompt_ids]);
    const slots = [-1, 0, 1, 3];
    const alone = prompts.flatMap((p) => slots.map((slot) => greedy(runner, [p], [slot], 30)[0]));
    const all = prompts.flatMap((p) => slots.map(() => p));
    const mixed = greedy(runner, all, [...slots, ...slots], 30);
    expect(mixed).toEqual(alone);
    // lora-a in a mixed step still matches the merged reference.
    expect(mixed[1]).toEqual(cases[0]!.greedy_ids.slice(0, 30));
    // Unloading a slot leaves the others as they were.
    runner.lora.unload(1);
    expect(greedy(runner, [prompts[0]!, prompts[0]!, prompts[0]!], [0, 3, -1], 30)).toEqual([
      alone[1],
      alone[3],
      alone[0],
    ]);
  });

  it("rejects a sequence whose slot holds no adapter", () => {
    const runner = makeRunner(2);
    expect(() => greedy(runner, [[1, 2, 3]], [1], 1)).toThrow(/slot 1, which holds no adapter/);
    expect(() => greedy(runner, [[1, 2, 3]], [5], 1)).toThrow(/slot 5/);
  });
});
