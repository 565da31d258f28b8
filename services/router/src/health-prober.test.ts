import { describe, expect, it } from "vitest";
import { HealthProber, type ProbedReplica } from "./health-prober";

/** A replica whose worker answers Health from a script: true, false, or "hang" until released. */
class ScriptedReplica implements ProbedReplica {
  readonly replicaId = "r";
  isHealthy = true;
  failures: string[] = [];
  numProbes = 0;
  answers: (boolean | "hang")[] = [];
  private releaseHang: (() => void) | null = null;

  readonly connection = {
    health: (_timeoutMs: number): Promise<boolean> => {
      this.numProbes++;
      const answer = this.answers.shift() ?? true;
      if (answer !== "hang") return Promise.resolve(answer);
      return new Promise((resolve) => {
        this.releaseHang = () => resolve(false);
      });
    },
  };

  release(): void {
    this.releaseHang?.();
  }

  fail(reason: string): void {
    this.isHealthy = false;
    this.failures.push(reason);
  }
}

const OPTIONS = { intervalMs: 10, timeoutMs: 10, maxMisses: 3 };

describe("HealthProber", () => {
  it("fails a replica only after maxMisses consecutive misses", async () => {
    const replica = new ScriptedReplica();
    const prober = new HealthProber(() => [replica], OPTIONS);
    replica.answers = [false, false, true, false, false];
    for (let i = 0; i < 5; i++) await prober.probeOnce();
    expect(replica.failures).toEqual([]);
    expect(prober.missesOf(replica)).toBe(2);
    replica.answers = [false];
    await prober.probeOnce();
    expect(replica.failures).toEqual(["3 consecutive health checks failed"]);
  });

  it("never overlaps probes: a round still waiting blocks the next", async () => {
    const replica = new ScriptedReplica();
    const prober = new HealthProber(() => [replica], OPTIONS);
    replica.answers = ["hang"];
    const slow = prober.probeOnce();
    await prober.probeOnce();
    await prober.probeOnce();
    expect(replica.numProbes).toBe(1);
    replica.release();
    await slow;
    expect(prober.missesOf(replica)).toBe(1);
  });

  it("probes on a timer, one round after another, until stopped", async () => {
    const replica = new ScriptedReplica();
    replica.answers = [false, false, false];
    const prober = new HealthProber(() => [replica], OPTIONS);
    prober.start();
    await new Promise((r) => setTimeout(r, 200));
    prober.stop();
    expect(replica.failures).toHaveLength(1);
    const numProbes = replica.numProbes;
    await new Promise((r) => setTimeout(r, 50));
    // A failed replica is not probed; after stop() nothing is.
    expect(replica.numProbes).toBe(numProbes);
  });
});
