import { describe, expect, it } from "vitest";
import { type AdapterId, asAdapterId, asRequestId } from "./ids";
import { LoraSlots } from "./lora-slots";
import { Scheduler } from "./scheduler";
import type { SchedulerConfig, StepPlan } from "./types";

type Tok = { readonly tokenId: number };

function make(overrides: Partial<SchedulerConfig>): Scheduler<string, Tok> {
  let now = 0;
  return new Scheduler<string, Tok>({
    numBlocks: 64,
    blockSize: 4,
    maxNumBatchedTokens: 64,
    maxNumSeqs: 8,
    maxModelLen: 64,
    clock: () => now++,
    ...overrides,
  });
}

function add(s: Scheduler<string, Tok>, id: string, adapter: string | null, maxTokens = 12) {
  const result = s.addRequest({
    requestId: asRequestId(id),
    promptTokenIds: [1, 2, 3],
    sampling: "greedy",
    maxTokens,
    adapterId: adapter === null ? null : asAdapterId(adapter),
  });
  expect(result).toEqual({ isAccepted: true });
}

/** Runs steps until idle; returns every plan. */
function drain(s: Scheduler<string, Tok>): StepPlan<string>[] {
  const plans: StepPlan<string>[] = [];
  for (let i = 0; i < 500 && s.hasPendingWork(); i++) {
    const plan = s.schedule();
    plans.push(plan);
    if (plan.seqs.length === 0) continue;
    s.commit(
      plan,
      plan.seqs.map((q) => (q.sample ? { tokenId: 7 } : null)),
    );
    s.checkInvariants();
  }
  expect(s.hasPendingWork()).toBe(false);
  return plans;
}

const distinctAdapters = (plan: StepPlan<string>) =>
  new Set(plan.seqs.flatMap((q) => (q.adapterId === null ? [] : [q.adapterId])));

describe("LoraSlots: adapters per step, residency, fairness", () => {
  it.each([
    [1, 64],
    [2, 64],
    [2, 6], // few blocks: preemptions return sequences to waiting, they re-enter through the gate
  ])(
    "never puts more than max_loras=%i adapters in one step (%i blocks)",
    (maxLoras, numBlocks) => {
      const s = make({ maxLoras, numBlocks, maxModelLen: 24 });
      for (const [i, a] of ["a", "b", "c", null, "a", "b", "c", null].entries()) add(s, `r${i}`, a);
      const resident = new Map<number, AdapterId>();
      for (const plan of drain(s)) {
        expect(distinctAdapters(plan).size).toBeLessThanOrEqual(maxLoras);
        for (const load of plan.loraLoads) resident.set(load.slot, load.adapterId);
        for (const q of plan.seqs) {
          if (q.adapterId === null) expect(q.loraSlot).toBe(-1);
          // The slot a sequence uses holds its adapter (loaded in this plan or earlier).
          else expect(resident.get(q.loraSlot)).toBe(q.adapterId);
        }
      }
      if (numBlocks < 10) expect(s.stats().numPreemptions).toBeGreaterThan(0);
    },
  );

  it("keeps an idle adapter resident and evicts the least recently used", () => {
    const slots = new LoraSlots(2);
    const set = (...ids: string[]) => new Set(ids.map(asAdapterId));
    expect(slots.assign(set("a"), set()).loads).toEqual([{ slot: 0, adapterId: "a" }]);
    expect(slots.assign(set("b"), set()).loads).toEqual([{ slot: 1, adapterId: "b" }]);
    expect(slots.assign(set("a"), set()).loads).toEqual([]); // still resident
    // b is the least recently used: c replaces it.
    expect(slots.assign(set("c"), set()).loads).toEqual([{ slot: 1, adapterId: "c" }]);
    // A pinned (running) adapter is never evicted, however old.
    expect(slots.assign(set("d"), set("a")).loads).toEqual([{ slot: 1, adapterId: "d" }]);
    expect(slots.resident().sort()).toEqual(["a", "d"]);
  });

  it("lets a request wait past the bound take a slot from a busier adapter", () => {
    const s = make({ maxLoras: 1, loraMaxSkips: 3 });
    add(s, "hot0", "hot", 50);
    add(s, "cold", "cold", 2);
    // A stream of hot requests keeps arriving; without the bound they would overtake forever.
    const firstCold: number[] = [];
    for (let step = 0; step < 60 && firstCold.length === 0; step++) {
      if (step % 2 === 0) add(s, `hot${step + 1}`, "hot", 50);
      const plan = s.schedule();
      if (plan.seqs.some((q) => q.adapterId === "cold")) firstCold.push(step);
      if (plan.seqs.length > 0) {
        s.commit(
          plan,
          plan.seqs.map((q) => (q.sample ? { tokenId: 7 } : null)),
        );
      }
    }
    expect(firstCold.length).toBe(1);
  });

  it("rejects an adapter request where the replica has no slots", () => {
    const s = make({ maxLoras: 0 });
    const result = s.addRequest({
      requestId: asRequestId("x"),
      promptTokenIds: [1],
      sampling: "greedy",
      adapterId: asAdapterId("a"),
    });
    expect(result.isAccepted).toBe(false);
  });
});
