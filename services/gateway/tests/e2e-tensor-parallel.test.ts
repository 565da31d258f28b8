import { loadGolden } from "@kiln/test-support";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MODEL, type Stack, startStack, stopStack } from "./helpers/stack";

// Real processes: router, gateway and tensor-parallel worker groups whose ranks share a POSIX
// shared-memory segment (ADR 0018). One gemm thread per rank: the test machine has 2 cores.
const GOLDEN = loadGolden();
const ENV = { KILN_THREADS: "1", KILN_SUPERVISOR_BACKOFF_MS: "200" };

async function goldenTexts(stack: Stack): Promise<string[]> {
  const answers = await Promise.all(
    GOLDEN.cases.map((c) =>
      stack.client.completions.create({
        model: MODEL,
        prompt: c.prompt_ids,
        max_tokens: GOLDEN.max_new_tokens,
        temperature: 0,
      }),
    ),
  );
  return answers.map((a) => a.choices[0]!.text);
}

/** Streams a long completion; resolves with every SSE data payload once the stream ends. */
async function streamEvents(stack: Stack, onFirst: () => void): Promise<unknown[]> {
  const res = await fetch(`${stack.baseURL}/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      model: MODEL,
      prompt: GOLDEN.cases[0]!.prompt_ids,
      max_tokens: 450,
      ignore_eos: true,
      stream: true,
    }),
  });
  const events: unknown[] = [];
  const decoder = new TextDecoder();
  let buffered = "";
  for await (const bytes of res.body!) {
    buffered += decoder.decode(bytes as Uint8Array, { stream: true });
    for (let end = buffered.indexOf("\n\n"); end >= 0; end = buffered.indexOf("\n\n")) {
      const data = buffered.slice(0, end).replace(/^data: /, "");
      buffered = buffered.slice(end + 2);
      if (data !== "[DONE]") events.push(JSON.parse(data));
      if (events.length === 3) onFirst();
    }
  }
  return events;
}

describe("TP × DP = 2 × 2 through the official openai client", () => {
  let stack: Stack | undefined;
  beforeAll(async () => {
    stack = await startStack(ENV, { tensorParallelSize: 2, dataParallelSize: 2 });
  }, 120_000);
  afterAll(() => stopStack(stack));

  it("runs four worker processes and reproduces every golden continuation", async () => {
    expect(Object.keys(stack!.cluster.pids).filter((n) => n.startsWith("worker-"))).toEqual([
      "worker-0-0",
      "worker-0-1",
      "worker-1-0",
      "worker-1-1",
    ]);
    expect(await goldenTexts(stack!)).toEqual(GOLDEN.cases.map((c) => c.greedy_text));
  }, 120_000);
});

describe("kill -9 of one rank mid-stream (T = 2)", () => {
  let stack: Stack | undefined;
  beforeAll(async () => {
    stack = await startStack(ENV, { tensorParallelSize: 2, dataParallelSize: 1 });
  }, 120_000);
  afterAll(() => stopStack(stack));

  it("ends the stream with worker_lost within 5 s and serves again once the rank is back", async () => {
    const victim = stack!.cluster.pids["worker-0-1"]!;
    let killedAt = 0;
    const events = await streamEvents(stack!, () => {
      killedAt = performance.now();
      process.kill(victim, "SIGKILL");
    });
    const endedAt = performance.now();
    expect(killedAt).toBeGreaterThan(0);
    expect(endedAt - killedAt).toBeLessThan(5000);
    expect(events.at(-1)).toMatchObject({ error: { code: "worker_lost" } });
    // The supervisor restarts the rank; rank 0 re-forms the group and the router reconnects.
    const deadline = Date.now() + 60_000;
    let texts: string[] | null = null;
    while (texts === null && Date.now() < deadline) {
      texts = await goldenTexts(stack!).catch(() => null);
      if (texts === null) await new Promise((r) => setTimeout(r, 500));
    }
    expect(stack!.cluster.pids["worker-0-1"]).not.toBe(victim);
    expect(texts).toEqual(GOLDEN.cases.map((c) => c.greedy_text));
  }, 120_000);
});
