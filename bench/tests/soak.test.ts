import { STORIES_DIR } from "@kiln/test-support";
import { describe, expect, it } from "vitest";
import { runSoak } from "../src/soak/soak";

/**
 * The short soak of `npm test` (`npm run bench:soak` runs the long one): real processes, a mix
 * of streams, client aborts, n = 3 and chat over a 16-block KV pool (so the scheduler preempts),
 * RSS sampled per process. Fails when RSS grows past the bound once warm, a request fails, or
 * KV blocks are still in use at the end.
 */
const DURATION_S = 24;
const WARM_S = 10;
const MAX_GROWTH_MIB = 48;

describe("soak", () => {
  it("holds memory and gives every KV block back", async () => {
    const report = await runSoak({
      modelDir: STORIES_DIR,
      durationS: DURATION_S,
      warmS: WARM_S,
      numClients: 6,
      kvCacheMemory: "320KiB",
    });
    const rows = report.growth.map(
      (g) => `${g.process}: warm ${g.warmMib.toFixed(0)} MiB, peak ${g.peakMib.toFixed(0)} MiB`,
    );
    console.log(
      `soak RSS\n${rows.join("\n")}\ncompleted ${JSON.stringify(report.counts.completed)}`,
    );
    expect(report.counts.errors).toEqual([]);
    for (const n of Object.values(report.counts.completed)) expect(n).toBeGreaterThan(0);
    expect(report.numPreemptions).toBeGreaterThan(0);
    expect(report.kvUsageRatioAtEnd).toBe(0);
    for (const g of report.growth) {
      expect(g.warmMib, g.process).toBeGreaterThan(20); // a real process was measured
      expect(g.growthMib, g.process).toBeLessThan(MAX_GROWTH_MIB);
    }
  }, 120_000);
});
