import {
  type ClusterOptions,
  type RunningCluster,
  resolveDraftModelDir,
  startCluster,
} from "@kiln/cluster";
import { loadGolden, REPO_ROOT, STORIES_DIR, sumSamples } from "@kiln/test-support";
import OpenAI from "openai";
import { expect } from "vitest";

export const MODEL_DIR = STORIES_DIR;
export const MODEL = "stories260K";

export interface Stack {
  readonly baseURL: string;
  readonly client: OpenAI;
  readonly cluster: RunningCluster;
  /** Everything the processes logged, for failure messages. */
  readonly logs: string[];
}

/**
 * The real thing: router, worker and gateway as separate processes on ephemeral ports (the
 * supervisor's code path, minus the supervisor process). Call `stopStack` in afterAll.
 */
export async function startStack(
  env: NodeJS.ProcessEnv = {},
  workerGroups?: ClusterOptions["workerGroups"],
): Promise<Stack> {
  const logs: string[] = [];
  const fullEnv = { ...process.env, KILN_KV_CACHE_MEMORY: "64MiB", ...env };
  const cluster = await startCluster({
    repoRoot: REPO_ROOT,
    modelDir: MODEL_DIR,
    servedName: MODEL,
    host: "127.0.0.1",
    port: 0,
    routerPort: 0,
    drainTimeoutS: 5,
    startTimeoutMs: 60_000,
    env: fullEnv,
    // As `npm start` does: a draft_model speculative config adds a draft worker (ADR 0017).
    draftModelDir: await resolveDraftModelDir(fullEnv, REPO_ROOT, MODEL_DIR),
    log: (line) => logs.push(line),
    ...(workerGroups ? { workerGroups } : {}),
  });
  const baseURL = `http://127.0.0.1:${cluster.gatewayPort}/v1`;
  const client = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0, timeout: 60_000 });
  return { baseURL, client, cluster, logs };
}

export async function stopStack(stack: Stack | undefined): Promise<void> {
  if (!stack) return;
  const start = Date.now();
  const code = await stack.cluster.stop("tests done");
  if (process.env.KILN_E2E_VERBOSE) {
    console.log(`stopped in ${Date.now() - start} ms (code ${code})\n${stack.logs.join("\n")}`);
  }
}

/** The sum of a metric's samples on the stack gateway's /metrics. */
export async function gatewayMetric(stack: Stack, name: string): Promise<number> {
  const text = await (await fetch(stack.baseURL.replace(/\/v1$/, "/metrics"))).text();
  return sumSamples(text, name);
}

/** A greedy completion of `prompt` (token ids), as long as the golden continuations. */
export function greedyCompletion(
  stack: Stack,
  prompt: number[],
  extra: Record<string, unknown> = {},
): Promise<OpenAI.Completion> {
  return stack.client.completions.create({
    model: MODEL,
    prompt,
    max_tokens: loadGolden().max_new_tokens,
    temperature: 0,
    ...extra,
  } as OpenAI.CompletionCreateParamsNonStreaming);
}

/** Every golden case alone, then 16 at once: each completion's text and length are its golden's. */
export async function expectGoldenCompletions(stack: Stack): Promise<void> {
  const { cases: golden } = loadGolden();
  for (const c of golden) {
    expect((await greedyCompletion(stack, c.prompt_ids)).choices[0]!.text).toBe(c.greedy_text);
  }
  const cases = Array.from({ length: 16 }, (_, i) => golden[i % golden.length]!);
  const results = await Promise.all(cases.map((c) => greedyCompletion(stack, c.prompt_ids)));
  results.forEach((res, i) => {
    expect(res.choices[0]!.text).toBe(cases[i]!.greedy_text);
    expect(res.usage?.completion_tokens).toBe(cases[i]!.greedy_ids.length);
  });
}
