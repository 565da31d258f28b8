import { rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadGolden } from "@kiln/test-support";
import type { Llama, Token } from "node-llama-cpp";
import { exportLlamaToGguf } from "../gguf/export-llama";

/**
 * The pre-flight check before trusting llama.cpp numbers: exports stories260K to GGUF and
 * compares llama.cpp's greedy continuation of every golden prompt with the golden ids.
 * Returns the number of cases that matched and the first mismatch, if any.
 */
export interface GoldenResult {
  readonly numCases: number;
  readonly numMatched: number;
  readonly firstMismatch: string | null;
}

export async function checkLlamaCppGolden(
  llama: Llama,
  storiesDir: string,
  goldenPath: string,
): Promise<GoldenResult> {
  const golden = loadGolden(goldenPath);
  const ggufPath = join(tmpdir(), `kiln-golden-stories260K-${process.pid}.gguf`);
  await exportLlamaToGguf(storiesDir, ggufPath);
  const model = await llama.loadModel({ modelPath: ggufPath });
  const context = await model.createContext({ contextSize: 512, sequences: 1, threads: 1 });
  let numMatched = 0;
  let firstMismatch: string | null = null;
  try {
    for (const [i, c] of golden.cases.entries()) {
      const sequence = context.getSequence();
      const out: number[] = [];
      const options = { temperature: 0, yieldEogToken: true };
      for await (const t of sequence.evaluate(c.prompt_ids as Token[], options)) {
        out.push(t);
        if (out.length >= c.greedy_ids.length) break;
      }
      await sequence.dispose();
      const at = out.findIndex((t, k) => t !== c.greedy_ids[k]);
      if (at < 0 && out.length === c.greedy_ids.length) numMatched++;
      else firstMismatch ??= `case ${i}: token ${at} is ${out[at]}, golden ${c.greedy_ids[at]}`;
    }
  } finally {
    await context.dispose();
    await model.dispose();
    await rm(ggufPath, { force: true });
  }
  return { numCases: golden.cases.length, numMatched, firstMismatch };
}
