import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { waitFor } from "@kiln/test-support";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MODEL, type Stack, startStack, stopStack } from "./helpers/stack";

// Real router, worker and gateway processes; 4 sequences at once, two tenants of equal weight.
let stack: Stack;
let dir: string;
let auditPath: string;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "kiln-tenants-e2e-"));
  const keysPath = join(dir, "keys.json");
  auditPath = join(dir, "audit.log");
  writeFileSync(
    keysPath,
    JSON.stringify({
      tenants: [
        { name: "team-a", api_keys: ["sk-a"] },
        { name: "team-b", api_keys: ["sk-b"] },
      ],
    }),
  );
  stack = await startStack({
    KILN_MAX_NUM_SEQS: "4",
    KILN_API_KEYS_FILE: keysPath,
    KILN_AUDIT_LOG: auditPath,
  });
}, 90_000);
afterAll(async () => {
  await stopStack(stack);
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 30_000);

const clientOf = (apiKey: string) =>
  new OpenAI({ baseURL: stack.baseURL, apiKey, maxRetries: 0, timeout: 120_000 });

/** Streams one completion; resolves with its time to first token (ms from the call). */
async function ttftOf(client: OpenAI, prompt: number[], maxTokens: number): Promise<number> {
  const start = performance.now();
  // ignore_eos is vLLM's extra field, accepted by Kiln: every request runs to max_tokens.
  const params = { model: MODEL, prompt, max_tokens: maxTokens, temperature: 0, ignore_eos: true };
  const stream = await client.completions.create({
    ...(params as OpenAI.CompletionCreateParamsNonStreaming),
    stream: true,
  });
  let ttft: number | null = null;
  for await (const chunk of stream) {
    if (ttft === null && chunk.choices[0]?.text) ttft = performance.now() - start;
  }
  return ttft ?? Number.POSITIVE_INFINITY;
}

describe("weighted fair queuing across tenants", () => {
  it("lets a tenant's few short requests through while another floods the queue", async () => {
    const a = clientOf("sk-a");
    const b = clientOf("sk-b");
    const flood = Array.from({ length: 24 }, (_, i) => ttftOf(a, [1, 400 + i, 401, 402], 120));
    // Let the flood reach the router's queue first: under FCFS b would wait behind all of it.
    await new Promise((r) => setTimeout(r, 300));
    const shorts = [];
    for (let i = 0; i < 3; i++) {
      shorts.push(ttftOf(b, [1, 300 + i, 301], 4));
      await new Promise((r) => setTimeout(r, 50));
    }
    const aTtfts = await Promise.all(flood);
    const bTtfts = await Promise.all(shorts);
    const worstA = Math.max(...aTtfts);
    const worstB = Math.max(...bTtfts);
    if (process.env.KILN_E2E_VERBOSE)
      console.log(`ttft ms a: ${aTtfts.map(Math.round)}; b: ${bTtfts.map(Math.round)}`);
    // FCFS makes them about equal (b behind 20 waiting floods); fair queuing, about one turnover.
    expect(worstB, `a: ${aTtfts.map(Math.round)}; b: ${bTtfts.map(Math.round)}`).toBeLessThan(
      worstA / 2,
    );
  }, 120_000);
});

describe("prefix-cache isolation between tenants", () => {
  it("reports cached_tokens for a tenant's repeat and 0 for another tenant's same prompt", async () => {
    const prompt = `Once upon a time ${"there was a little cat who liked to play in the sun. ".repeat(12)}`;
    const ask = (key: string) =>
      clientOf(key).completions.create({ model: MODEL, prompt, max_tokens: 4, temperature: 0 });
    const first = await ask("sk-a");
    expect(first.usage!.prompt_tokens).toBeGreaterThan(64);
    expect(first.usage!.prompt_tokens_details?.cached_tokens).toBe(0);
    const repeat = await ask("sk-a");
    expect(repeat.usage!.prompt_tokens_details?.cached_tokens).toBeGreaterThan(0);
    const other = await ask("sk-b");
    expect(other.usage!.prompt_tokens_details?.cached_tokens).toBe(0);
    // Streaming reports it too (the repeat of b's own prompt now hits b's cache).
    const stream = await clientOf("sk-b").completions.create({
      model: MODEL,
      prompt,
      max_tokens: 4,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    let cached: number | undefined;
    for await (const chunk of stream) {
      if (chunk.usage) cached = chunk.usage.prompt_tokens_details?.cached_tokens;
    }
    expect(cached).toBeGreaterThan(0);
    expect(repeat.choices[0]!.text).toBe(first.choices[0]!.text);
    expect(other.choices[0]!.text).toBe(first.choices[0]!.text);
  }, 60_000);

  it("wrote an audit line per request with tenant and token counts", async () => {
    await waitFor(
      () => readFileSync(auditPath, "utf8").trim().split("\n").length >= 31,
      "audit lines",
    );
    const lines = readFileSync(auditPath, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(lines.filter((l) => l.tenant === "team-a" && l.status === 200).length).toBe(26);
    const metrics = await (await fetch(stack.baseURL.replace(/\/v1$/, "/metrics"))).text();
    expect(metrics).toContain('kiln_tenant_requests_total{tenant="team-a",status="200"} 26');
    expect(metrics).toMatch(/kiln_tenant_tokens_total\{tenant="team-b",kind="prompt"\} [1-9]/);
    expect(
      lines.every((l) => typeof l.latency_ms === "number" && l.key_id.startsWith("key-")),
    ).toBe(true);
  });
});
