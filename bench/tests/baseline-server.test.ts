import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadGolden, requireAvailable, STORIES_DIR } from "@kiln/test-support";
import type { LlamaContext, LlamaModel } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { tryLoadLlamaCpp } from "../src/baseline/load-llama";
import { createBaselineServer } from "../src/baseline/openai-server";
import { SequencePool } from "../src/baseline/sequence-pool";
import { StepBarrier } from "../src/baseline/step-barrier";
import { exportLlamaToGguf } from "../src/gguf/export-llama";
import { runLoad } from "../src/serve/runner";

/** The llama.cpp baseline server in-process on stories260K with 2 sequence slots. */

const golden = loadGolden();
const loaded = await tryLoadLlamaCpp();
// Locally a missing llama.cpp binary skips (with the reason); under CI=true it fails.
requireAvailable(
  "node-llama-cpp's llama.cpp binary",
  loaded.llama !== null,
  `it cannot load: ${loaded.error}`,
);
if (loaded.error !== null) {
  console.warn(`SKIPPING baseline server tests: node-llama-cpp cannot load: ${loaded.error}`);
}

describe.skipIf(loaded.llama === null)("baseline OpenAI server over llama.cpp", () => {
  let workDir: string;
  let model: LlamaModel;
  let context: LlamaContext;
  let server: Server;
  let baseUrl: string;

  beforeAll(async () => {
    workDir = await mkdtemp(join(tmpdir(), "kiln-baseline-"));
    const path = join(workDir, "stories260K.gguf");
    await exportLlamaToGguf(STORIES_DIR, path);
    model = await loaded.llama!.loadModel({ modelPath: path });
    context = await model.createContext({ contextSize: 512, sequences: 2, threads: 1 });
    server = createBaselineServer({
      model,
      pool: new SequencePool(context),
      modelName: "stories260K",
      apiKey: "sk-test",
      barrier: new StepBarrier(),
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    server?.closeAllConnections();
    server?.close();
    await context?.dispose();
    await model?.dispose();
    await rm(workDir, { recursive: true, force: true });
  });

  const post = (path: string, body: unknown, key = "sk-test") =>
    fetch(`${baseUrl}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
      body: JSON.stringify(body),
    });

  it("streams the golden greedy text for a token-id prompt, one chunk per token", async () => {
    const c = golden.cases[0]!;
    const res = await post("/v1/completions", {
      model: "stories260K",
      prompt: c.prompt_ids,
      max_tokens: c.greedy_ids.length,
      temperature: 0,
      ignore_eos: true,
      stream: true,
      stream_options: { include_usage: true },
    });
    expect(res.headers.get("content-type")).toMatch(/text\/event-stream/);
    const events = (await res.text()).split("\n\n").filter(Boolean);
    expect(events.at(-1)).toBe("data: [DONE]");
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e.slice(6)));
    const usage = chunks.at(-1).usage;
    expect(usage).toEqual({
      prompt_tokens: c.prompt_ids.length,
      completion_tokens: c.greedy_ids.length,
      total_tokens: c.prompt_ids.length + c.greedy_ids.length,
    });
    const textChunks = chunks.slice(0, -1);
    expect(textChunks.map((ch) => ch.choices[0].text).join("")).toBe(c.greedy_text);
    expect(textChunks.at(-1).choices[0].finish_reason).toBe("length");
    expect(textChunks.length).toBe(c.greedy_ids.length);
  });

  it("queues requests beyond its sequences and serves them all", async () => {
    const { port } = server.address() as AddressInfo;
    const items = golden.cases.map((c) => ({
      prompt: { ids: c.prompt_ids },
      promptLen: c.prompt_ids.length,
      outputLen: 20,
    }));
    const result = await runLoad(
      {
        baseUrl: `http://127.0.0.1:${port}`,
        endpoint: "/v1/completions",
        model: "stories260K",
        apiKey: "sk-test",
        ignoreEos: true,
      },
      [...items, ...items],
      {
        requestRate: Number.POSITIVE_INFINITY,
        maxConcurrency: null,
        seed: 0,
        numWarmups: 0,
        slos: null,
        percentiles: [99],
      },
    );
    expect(result.metrics.numFailed).toBe(0);
    expect(result.metrics.totalOutputTokens).toBe(20 * 2 * items.length);
  });

  it("answers chat completions without streaming", async () => {
    const res = await post("/v1/chat/completions", {
      model: "stories260K",
      messages: [{ role: "user", content: "Tell me a story" }],
      max_tokens: 8,
    });
    // biome-ignore lint/suspicious/noExplicitAny: a JSON body read by field
    const body: any = await res.json();
    expect(res.status).toBe(200);
    expect(body.object).toBe("chat.completion");
    expect(body.choices[0].message.role).toBe("assistant");
    expect(body.usage.completion_tokens).toBeLessThanOrEqual(8);
  });

  it("rejects bad bodies with 400 naming the parameter, and wrong keys with 401", async () => {
    const bad = await post("/v1/completions", { model: "x", prompt: [1, 2], max_tokens: 0 });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { param: string } }).error.param).toBe("max_tokens");
    const unauthorized = await post("/v1/completions", { prompt: [1] }, "nope");
    expect(unauthorized.status).toBe(401);
    const models = await fetch(`${baseUrl}/v1/models`, {
      headers: { authorization: "Bearer sk-test" },
    });
    const list = (await models.json()) as { data: { id: string }[] };
    expect(list.data[0]!.id).toBe("stories260K");
  });
});
