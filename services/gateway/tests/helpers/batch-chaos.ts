import { loadGolden, waitFor } from "@kiln/test-support";
import type OpenAI from "openai";
import { toFile } from "openai";
import { expect } from "vitest";
import { jsonl, MODEL, readJsonl, waitForBatch } from "./batch-stack";

const GOLDEN = loadGolden();
export const NUM_LINES = 12;

/** NUM_LINES greedy golden prompts; every third line is invalid (an error line). */
export function chaosLines() {
  return Array.from({ length: NUM_LINES }, (_, i) => {
    const c = GOLDEN.cases[i % GOLDEN.cases.length]!;
    const maxTokens = i % 3 === 2 ? -1 : GOLDEN.max_new_tokens;
    return {
      custom_id: `line-${i}`,
      method: "POST",
      url: "/v1/completions",
      body: { model: MODEL, prompt: c.prompt, max_tokens: maxTokens, temperature: 0 },
    };
  });
}

export async function submit(client: OpenAI): Promise<string> {
  const file = await client.files.create({
    file: await toFile(Buffer.from(jsonl(chaosLines())), "chaos.jsonl"),
    purpose: "batch",
  });
  const batch = await client.batches.create({
    input_file_id: file.id,
    endpoint: "/v1/completions",
    completion_window: "24h",
  });
  return batch.id;
}

export async function waitForProgress(client: OpenAI, id: string, minDone: number): Promise<void> {
  await waitFor(
    async () => {
      const { request_counts: c } = await client.batches.retrieve(id);
      return (c?.completed ?? 0) + (c?.failed ?? 0) >= minDone;
    },
    `batch ${id} to answer ${minDone} lines`,
    { timeoutMs: 60_000 },
  );
}

/** Every line answered exactly once, in the right file, with the golden text. */
export async function expectExactlyOnce(client: OpenAI, id: string): Promise<void> {
  const batch = await waitForBatch(client, id, 90_000);
  expect(batch.status).toBe("completed");
  const numErrors = NUM_LINES / 3;
  expect(batch.request_counts).toEqual({
    total: NUM_LINES,
    completed: NUM_LINES - numErrors,
    failed: numErrors,
  });
  const outputs = await readJsonl(client, batch.output_file_id!);
  const errors = await readJsonl(client, batch.error_file_id!);
  const ids = [...outputs, ...errors].map((l) => l.custom_id).sort();
  expect(ids).toEqual(Array.from({ length: NUM_LINES }, (_, i) => `line-${i}`).sort());
  for (const line of outputs) {
    const i = Number(line.custom_id!.slice("line-".length));
    expect(line.response.body.choices?.[0]?.text).toBe(
      GOLDEN.cases[i % GOLDEN.cases.length]!.greedy_text,
    );
  }
  for (const line of errors) expect(line.response.status_code).toBe(400);
}
