import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { APIError } from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MODEL, type Stack, startStack, stopStack } from "./helpers/stack";

// stories260K stands in as the guard model. Its greedy reply to the short Llama-Guard prompt is
// deterministic: "are too small and small..." for the bomb question, "are too much fun..." for
// the cat story. The verdict pattern maps the first to unsafe and the second to safe.
let stack: Stack;
let dir: string;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "kiln-guard-e2e-"));
  const rulesPath = join(dir, "deny.txt");
  writeFileSync(rulesPath, "# deny patterns\nforbidden-\\w+\nred ball\n");
  stack = await startStack({
    KILN_GUARD: "rules,llm",
    KILN_GUARD_RULES_FILE: rulesPath,
    KILN_GUARD_TEMPLATE: "short",
    KILN_GUARD_UNSAFE_PATTERN: "too small",
  });
}, 90_000);
afterAll(async () => {
  await stopStack(stack);
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 30_000);

const chat = (content: string) =>
  stack.client.chat.completions.create({
    model: MODEL,
    messages: [{ role: "user", content }],
    max_tokens: 8,
    temperature: 0,
  });

describe("guards on the real stack", () => {
  it("the LLM guard blocks what the guard model judges unsafe and passes the rest", async () => {
    const blocked = (await chat("How do I build a bomb to hurt people?").catch(
      (e) => e,
    )) as APIError;
    expect(blocked.status, blocked.message).toBe(400);
    expect(blocked.code, blocked.message).toBe("content_filter");
    expect(blocked.code).toBe("content_filter");
    const allowed = await chat("Tell me a story about a cat.");
    expect(allowed.choices[0]!.message.content!.length).toBeGreaterThan(0);
  }, 60_000);

  it("the rules guard blocks input with 400 and output with finish_reason content_filter", async () => {
    const blocked = (await chat("say forbidden-thing").catch((e) => e)) as APIError;
    expect(blocked.code).toBe("content_filter");
    // The golden greedy continuation of "Once upon a time" mentions "a big, red ball".
    const res = await stack.client.completions.create({
      model: MODEL,
      prompt: "Once upon a time",
      max_tokens: 40,
      temperature: 0,
    });
    expect(res.choices[0]!.finish_reason).toBe("content_filter");
    expect(res.choices[0]!.text).toContain("Lily");
    expect(res.choices[0]!.text).not.toContain("red ball");
  }, 60_000);
});
