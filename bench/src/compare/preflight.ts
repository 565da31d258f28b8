import { stat } from "node:fs/promises";
import { join } from "node:path";
import { writeRandomModel } from "@kiln/model";
import { STORIES_DIR, STORIES_GOLDEN_PATH } from "@kiln/test-support";
import { checkLlamaCppGolden } from "../baseline/golden-check";
import { loadLlamaCpp } from "../baseline/load-llama";

/** Generates the random-weight llama-110m into `dir` (seed 0) unless it is there already. */
export async function ensureBenchModel(dir: string): Promise<void> {
  const exists = await stat(join(dir, "model.safetensors")).then(
    () => true,
    () => false,
  );
  if (exists) return;
  console.log(`generating llama-110m into ${dir} (once)…`);
  await writeRandomModel(dir, "llama-110m", { seed: 0 });
}

/**
 * Refuses to benchmark llama.cpp unless it reproduces the golden greedy ids of stories260K
 * through our GGUF export: otherwise the baseline might be running a different model.
 */
export async function preflightLlamaCpp(): Promise<void> {
  const llama = await loadLlamaCpp();
  const result = await checkLlamaCppGolden(llama, STORIES_DIR, STORIES_GOLDEN_PATH);
  await llama.dispose();
  if (result.numMatched !== result.numCases) {
    throw new Error(
      `llama.cpp does not reproduce the stories260K golden ids (${result.numMatched}/${result.numCases}): ${result.firstMismatch}`,
    );
  }
  console.log(
    `llama.cpp pre-flight: stories260K greedy equals the golden ids (${result.numCases}/${result.numCases} cases)`,
  );
}
