/**
 * Run by tests/tiers.test.ts in a child process whose environment makes oneDNN unavailable
 * (KILN_DISABLE_ONEDNN=1): for each tier named in argv, the stories260K greedy golden cases
 * through a CpuModelRunner on that tier's GEMM (selectKernelTier, as the worker does). Prints
 * one JSON line: per tier, its name and generated ids, and whether libdnnl or kiln_tier was ever
 * mapped.
 */
import { readFileSync } from "node:fs";
import { loadModel } from "@kiln/model";
import { loadGoldenCases, STORIES_DIR } from "@kiln/test-support";
import { type KernelTierSetting, selectKernelTier } from "../../src/cpu/kernel-tier";
import { CpuModelRunner } from "../../src/cpu/model-runner";
import { greedyGenerate } from "./step-driver";

const cases = loadGoldenCases();
const prompts = cases.map((c) => c.prompt_ids);
const maxNewTokens = Math.max(...cases.map((c) => c.greedy_ids.length));
const model = await loadModel(STORIES_DIR);
const results: Record<string, { tier: string; kernels: string; ids: number[][] }> = {};
for (const setting of process.argv.slice(2) as KernelTierSetting[]) {
  const { gemm, tier } = selectKernelTier({ setting, numThreads: 2 });
  const blockSize = 4;
  const maxLen = Math.max(...prompts.map((p) => p.length)) + maxNewTokens;
  const numBlocks = prompts.length * Math.ceil(maxLen / blockSize) + 3;
  const runner = new CpuModelRunner(model.config, model.weights, { numBlocks, blockSize, gemm });
  const ids = await greedyGenerate(runner, prompts, {
    blockSize,
    numBlocks,
    isBatched: true,
    chunkLen: 7,
    maxNewTokens,
  });
  results[setting] = {
    tier: `${tier.name}/${tier.source}`,
    kernels: `${runner.kernels}/${runner.sampling}`,
    ids: ids.map((s) => [...s]),
  };
}
const maps = readFileSync("/proc/self/maps", "utf8");
const isOnednnMapped = maps.includes("libdnnl");
const isTierAddonMapped = maps.includes("kiln_tier.node");
process.stdout.write(`${JSON.stringify({ results, isOnednnMapped, isTierAddonMapped })}\n`);
