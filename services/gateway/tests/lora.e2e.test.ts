import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig, writeRandomLoraAdapter } from "@kiln/model";
import { LORA_A_DIR, LORA_A_GOLDEN_PATH, loadGolden, STORIES_DIR } from "@kiln/test-support";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MODEL, type Stack, startStack, stopStack } from "./helpers/stack";

// LoRA multiplexing end to end (ADR 0015): real router, worker and gateway processes, the
// official openai client. Adapters are applied per token in mixed batches, never merged.

const GOLDEN = loadGolden(LORA_A_GOLDEN_PATH);
const LORA_A = "stories260K-lora-a";
let tmp: string;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), "kiln-lora-e2e-"));
  const config = await loadConfig(STORIES_DIR);
  await writeRandomLoraAdapter(join(tmp, "rand-1"), config, { rank: 4, seed: 11 });
  await writeRandomLoraAdapter(join(tmp, "rand-2"), config, { rank: 8, seed: 22 });
  await writeRandomLoraAdapter(join(tmp, "too-big"), config, { rank: 128, seed: 3 });
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

async function post(stack: Stack, path: string, body: unknown) {
  const res = await fetch(`${stack.baseURL}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: res.status, text: await res.text() };
}

async function complete(stack: Stack, model: string, prompt: string | number[], maxTokens = 40) {
  const res = await stack.client.completions.create({
    model,
    prompt,
    max_tokens: maxTokens,
    temperature: 0,
  });
  return res.choices[0]!.text;
}

describe.each([4, 1])("LoRA through the API, max_loras %i", (maxLoras) => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({
      KILN_MAX_LORAS: String(maxLoras),
      KILN_LORA_MODULES: `${LORA_A}=${LORA_A_DIR},rand-1=${join(tmp, "rand-1")}`,
      KILN_ALLOW_RUNTIME_LORA_UPDATING: "1",
    });
  }, 90_000);
  afterAll(() => stopStack(stack), 30_000);

  it("reproduces the stories260K-lora-a golden (merged float64 reference) exactly", async () => {
    const texts = await Promise.all(
      GOLDEN.cases.map((c) => complete(stack, LORA_A, [...c.prompt_ids], GOLDEN.max_new_tokens)),
    );
    expect(texts).toEqual(GOLDEN.cases.map((c) => c.greedy_text));
  }, 60_000);

  it("a concurrent mix of base and three adapters equals each request run alone", async () => {
    expect(
      await post(stack, "/load_lora_adapter", {
        lora_name: "rand-2",
        lora_path: join(tmp, "rand-2"),
      }),
    ).toMatchObject({ status: 200 });
    const models = [MODEL, LORA_A, "rand-1", "rand-2"];
    const prompts = GOLDEN.cases.slice(0, 3).map((c) => c.prompt);
    const alone = new Map<string, string>();
    for (const model of models) {
      for (const prompt of prompts)
        alone.set(`${model}|${prompt}`, await complete(stack, model, prompt));
    }
    // Every adapter visibly changes the output.
    for (const prompt of prompts) {
      const outs = new Set(models.map((m) => alone.get(`${m}|${prompt}`)));
      expect(outs.size).toBe(models.length);
    }
    // Twice over, interleaved: at max_loras 1 adapters must swap under load.
    const jobs = [0, 1].flatMap(() => prompts.flatMap((p) => models.map((m) => [m, p] as const)));
    const mixed = await Promise.all(jobs.map(([m, p]) => complete(stack, m, p)));
    expect(mixed).toEqual(jobs.map(([m, p]) => alone.get(`${m}|${p}`)));
  }, 120_000);
});

describe("LoRA admin endpoints", () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({
      KILN_MAX_LORAS: "2",
      KILN_LORA_MODULES: `${LORA_A}=${LORA_A_DIR}`,
      KILN_ALLOW_RUNTIME_LORA_UPDATING: "1",
    });
  }, 90_000);
  afterAll(() => stopStack(stack), 30_000);

  it("lists adapters with the base model as parent", async () => {
    const ids = [];
    for await (const m of stack.client.models.list()) ids.push(m);
    expect(ids.map((m) => m.id)).toEqual([MODEL, LORA_A]);
    expect(ids[1]).toMatchObject({ parent: MODEL, root: LORA_A_DIR });
  });

  it("loads, refuses duplicates and bad adapters, unloads, and 404s unknown names", async () => {
    const path = join(tmp, "rand-1");
    expect(
      await post(stack, "/load_lora_adapter", { lora_name: "r1", lora_path: path }),
    ).toMatchObject({ status: 200 });
    const dup = await post(stack, "/load_lora_adapter", { lora_name: "r1", lora_path: path });
    expect(dup.status).toBe(400);
    expect(dup.text).toMatch(/already been loaded/);
    const missing = await post(stack, "/load_lora_adapter", {
      lora_name: "x",
      lora_path: join(tmp, "nope"),
    });
    expect(missing.status).toBe(400);
    expect(missing.text).toMatch(/nope/);
    const big = await post(stack, "/load_lora_adapter", {
      lora_name: "big",
      lora_path: join(tmp, "too-big"),
    });
    expect(big.status).toBe(400);
    expect(big.text).toMatch(/rank 128 is above max_lora_rank 64/);
    expect((await post(stack, "/load_lora_adapter", { lora_name: "x" })).status).toBe(400);
    expect(await complete(stack, "r1", "Once upon a time", 8)).not.toBe("");
    expect(await post(stack, "/unload_lora_adapter", { lora_name: "r1" })).toMatchObject({
      status: 200,
    });
    expect((await post(stack, "/unload_lora_adapter", { lora_name: "r1" })).status).toBe(404);
    await expect(complete(stack, "r1", "Once upon a time", 8)).rejects.toMatchObject({
      status: 404,
    });
    await expect(complete(stack, "never-loaded", "Hi", 8)).rejects.toMatchObject({ status: 404 });
  }, 60_000);

  it("exposes kiln_lora_requests_info and per-adapter request counters", async () => {
    await complete(stack, LORA_A, "Once upon a time", 4);
    await complete(stack, LORA_A, "The little dog", 4);
    const text = await (await fetch(stack.baseURL.replace(/\/v1$/, "/metrics"))).text();
    expect(text).toMatch(/kiln_lora_requests_total\{lora_name="stories260K-lora-a"\} [2-9]/);
    expect(text).toMatch(
      /kiln_lora_requests_info\{replica="[^"]+",running_lora_adapters="",waiting_lora_adapters="",max_lora="2"\} 1/,
    );
  });

  it("lets a request in flight finish when its adapter is unloaded", async () => {
    const path = join(tmp, "rand-2");
    expect(
      (await post(stack, "/load_lora_adapter", { lora_name: "r2", lora_path: path })).status,
    ).toBe(200);
    const expected = await complete(stack, "r2", "The little dog", 200);
    const stream = await stack.client.completions.create({
      model: "r2",
      prompt: "The little dog",
      max_tokens: 200,
      temperature: 0,
      stream: true,
    });
    let text = "";
    let finish: string | null = null;
    let unloaded = false;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.text ?? "";
      finish = chunk.choices[0]?.finish_reason ?? finish;
      if (!unloaded && text.length > 0) {
        unloaded = true;
        expect((await post(stack, "/unload_lora_adapter", { lora_name: "r2" })).status).toBe(200);
      }
    }
    expect(unloaded).toBe(true);
    expect(finish).not.toBeNull();
    expect(text).toBe(expected);
    await expect(complete(stack, "r2", "The little dog", 4)).rejects.toMatchObject({ status: 404 });
  }, 60_000);
});
