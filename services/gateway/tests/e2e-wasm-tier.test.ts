/**
 * The WebAssembly SIMD kernel tier (ADR 0026) through the whole stack, as `npm start` runs it on
 * a platform without a native tier (acted out with KILN_DISABLE_NATIVE_TIER=1 and oneDNN's dlopen
 * refused): the worker picks wasm-simd by itself, names it, and the official openai client gets
 * the golden completions alone and 8 at once (batched steps on the helper threads).
 */
import { loadGolden } from "@kiln/test-support";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MODEL, type Stack, startStack, stopStack } from "./helpers/stack";

const GOLDEN = loadGolden();
let stack: Stack;

beforeAll(async () => {
  stack = await startStack({
    KILN_DISABLE_ONEDNN: "1",
    KILN_DISABLE_NATIVE_TIER: "1",
    KILN_KERNEL_TIER: "",
    KILN_REQUIRE_NATIVE: "",
    KILN_NATIVE_THREADS: "2",
  });
}, 90_000);
afterAll(() => stopStack(stack), 30_000);

const complete = (prompt: number[]) =>
  stack.client.completions.create({
    model: MODEL,
    prompt,
    max_tokens: GOLDEN.max_new_tokens,
    temperature: 0,
  });

describe("the wasm-simd kernel tier behind the gateway", () => {
  it("is the worker's tier and reproduces the goldens alone and batched", async () => {
    const listening = stack.logs.find((l) => l.includes('"listening"') && l.includes("kernelTier"));
    expect(listening, stack.logs.join("\n")).toContain('"kernelTier":"wasm-simd"');
    for (const c of GOLDEN.cases) {
      expect((await complete(c.prompt_ids)).choices[0]!.text).toBe(c.greedy_text);
    }
    const cases = Array.from({ length: 8 }, (_, i) => GOLDEN.cases[i % GOLDEN.cases.length]!);
    const results = await Promise.all(cases.map((c) => complete(c.prompt_ids)));
    results.forEach((res, i) => {
      expect(res.choices[0]!.text).toBe(cases[i]!.greedy_text);
    });
  }, 60_000);
});
