/**
 * `npm run bench:soak`: a longer soak than the one in `npm test` (bench/tests/soak.test.ts).
 * KILN_SOAK_DURATION_S (default 600), KILN_SOAK_CLIENTS (default 8), KILN_MODEL (default the
 * stories260K model in ../shared). Prints RSS per process every 10 s, then a JSON report; exits
 * 1 when RSS grew more than KILN_SOAK_MAX_GROWTH_MIB (default 64) once warm, a request failed,
 * or KV usage is not 0 at the end.
 */
import { STORIES_DIR } from "@kiln/test-support";
import { runSoak } from "./soak";

const env = process.env;
const durationS = Number(env.KILN_SOAK_DURATION_S ?? 600);
const maxGrowthMib = Number(env.KILN_SOAK_MAX_GROWTH_MIB ?? 64);
const report = await runSoak({
  modelDir: env.KILN_MODEL ?? STORIES_DIR,
  durationS,
  warmS: Math.min(60, durationS / 3),
  numClients: Number(env.KILN_SOAK_CLIENTS ?? 8),
  kvCacheMemory: env.KILN_SOAK_KV_CACHE_MEMORY ?? "320KiB",
  sampleIntervalMs: 10_000,
  log: (line) => process.stderr.write(`soak: ${line}\n`),
});
const { counts, growth, kvUsageRatioAtEnd, numPreemptions } = report;
process.stdout.write(
  `${JSON.stringify({ durationS, counts, growth, kvUsageRatioAtEnd, numPreemptions }, null, 2)}\n`,
);
const isOk =
  counts.errors.length === 0 &&
  kvUsageRatioAtEnd === 0 &&
  growth.every((g) => g.growthMib <= maxGrowthMib);
process.exit(isOk ? 0 : 1);
