import { describe, expect, it } from "vitest";
import { cpuShareBetween, snapshotCpu } from "./cpu-usage";

describe.skipIf(process.platform !== "linux")("cpuShareBetween", () => {
  it("attributes a busy loop to the process that ran it", () => {
    const me = [{ name: "me", pid: process.pid }];
    const before = snapshotCpu(me);
    const until = performance.now() + 300;
    let x = 0;
    while (performance.now() < until) x += Math.sqrt(x + 1);
    const share = cpuShareBetween(before, snapshotCpu(me));
    expect(x).toBeGreaterThan(0);
    // One busy thread on an N-core machine: about 1/N of it (ticks are 10 ms, so loosely).
    expect(share.byProcess.me).toBeGreaterThan(0.1);
    expect(share.byProcess["load generator"]).toBeGreaterThan(0.1);
    expect(share.total).not.toBeNull();
    expect(share.others).toBeGreaterThanOrEqual(0);
  });

  it("skips processes /proc does not know", () => {
    const gone = [{ name: "gone", pid: 2 ** 22 + 17 }];
    const share = cpuShareBetween(snapshotCpu(gone), snapshotCpu(gone));
    expect(share.byProcess.gone).toBeUndefined();
  });
});
