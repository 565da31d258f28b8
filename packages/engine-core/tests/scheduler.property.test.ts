import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { RequestId } from "../src/index";
import { adapter, Harness } from "./harness";

/** Three shared prefixes, so prompts hit (and fight over) the prefix cache. */
const PREFIXES = [
  [1, 2, 3, 4, 5, 6, 7, 8],
  [1, 2, 3, 4, 9, 9, 9, 9],
  [20, 21, 22],
];
const NAMESPACES = [
  { adapterId: null, cacheSalt: null },
  { adapterId: adapter("lora-a"), cacheSalt: null },
  { adapterId: null, cacheSalt: "tenant-b" },
];

const addCommand = fc.record({
  kind: fc.constant("add" as const),
  prefix: fc.integer({ min: 0, max: PREFIXES.length - 1 }),
  suffix: fc.array(fc.integer({ min: 0, max: 63 }), { maxLength: 9 }),
  n: fc.constantFrom(1, 1, 1, 2, 3),
  maxTokens: fc.integer({ min: 1, max: 12 }),
  minTokens: fc.integer({ min: 0, max: 2 }),
  priority: fc.constantFrom(0, 0, 1),
  namespace: fc.integer({ min: 0, max: NAMESPACES.length - 1 }),
  hasEos: fc.boolean(),
});
const command = fc.oneof(
  { weight: 3, arbitrary: addCommand },
  { weight: 6, arbitrary: fc.constant({ kind: "step" as const }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("abort" as const), at: fc.nat() }) },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant("abortInFlight" as const), at: fc.nat() }),
  },
);
type Command = typeof command extends fc.Arbitrary<infer C> ? C : never;

function apply(h: Harness, cmd: Command, ids: RequestId[]): void {
  if (cmd.kind === "add") {
    const promptTokenIds = [...PREFIXES[cmd.prefix]!, ...cmd.suffix];
    const minTokens = Math.min(cmd.minTokens, cmd.maxTokens);
    const eosTokenIds = cmd.hasEos ? [0, 5] : [];
    const fields = { promptTokenIds, n: cmd.n, maxTokens: cmd.maxTokens, minTokens, eosTokenIds };
    ids.push(h.add({ ...fields, priority: cmd.priority, ...NAMESPACES[cmd.namespace]! }));
  } else if (cmd.kind === "step") {
    h.step();
  } else if (cmd.kind === "abort") {
    if (ids.length > 0) h.abort(ids[cmd.at % ids.length]!);
  } else {
    const plan = h.plan();
    const victim = plan.seqs[cmd.at % Math.max(1, plan.seqs.length)];
    h.execute(plan, () => {
      if (victim !== undefined) h.abort(victim.requestId);
    });
  }
}

describe("Scheduler properties (random add / step / abort / commit)", () => {
  let numAheadSteps = 0;
  let numBurstSteps = 0;
  it.each([
    ["one plan at a time", false, 1],
    ["each step planned ahead of the last one's commit (overlapped steps)", true, 1],
    ["decodes run up to 4 steps per plan (multi-step decode)", false, 4],
    ["multi-step decode and overlapped steps together", true, 3],
  ])(
    "%s: keeps every invariant, finishes every request once and frees every block",
    (_, isAhead, maxDecodeSteps) => {
      numAheadSteps = 0;
      numBurstSteps = 0;
      fc.assert(
        fc.property(
          fc.array(command, { maxLength: 50 }),
          fc.integer({ min: 8, max: 12 }),
          (commands, numBlocks) => {
            const h = new Harness({
              numBlocks,
              blockSize: 4,
              maxNumBatchedTokens: 6,
              maxNumSeqs: 4,
              maxModelLen: 28,
            });
            h.isAhead = isAhead;
            h.maxDecodeSteps = maxDecodeSteps;
            const ids: RequestId[] = [];
            for (const cmd of commands) {
              apply(h, cmd, ids);
              h.scheduler.checkInvariants();
            }
            h.drain(3000);
            expect(h.scheduler.stats()).toMatchObject({ numUsedBlocks: 0, numRunningSeqs: 0 });
            for (const [id, record] of h.requests) {
              expect(record.numFinishes, `request ${id}`).toBe(1);
              record.outputs.forEach((out, index) => {
                expect(out).toEqual(h.expectedOutput(id, index, out.length));
                if (!record.isAborted) expect(out.length).toBeGreaterThan(0);
              });
            }
            expect(h.worker.tables.size).toBe(0);
            numAheadSteps += h.numAheadSteps;
            numBurstSteps += h.numBurstSteps;
          },
        ),
        { numRuns: 150 },
      );
      // Planned ahead and in bursts for real (not always refused), and never without the switch.
      if (isAhead) expect(numAheadSteps).toBeGreaterThan(150);
      else expect(numAheadSteps).toBe(0);
      if (maxDecodeSteps > 1) expect(numBurstSteps).toBeGreaterThan(30);
      else expect(numBurstSteps).toBe(0);
    },
  );
});
