import { GrammarHosts, loadGrammarVocab, type StepInput } from "@kiln/kernels";
import { StepRequest } from "@kiln/proto";
import { STORIES_DIR } from "@kiln/test-support";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GrammarTable } from "./grammar-table";

let hosts: GrammarHosts;
let vocab: readonly string[];
beforeAll(async () => {
  const v = await loadGrammarVocab(STORIES_DIR, 512, [2]);
  vocab = v.encodedVocab;
  hosts = await GrammarHosts.create(v, { maxWhitespace: 1, cacheSize: 8, maxThreads: 1 });
});
afterAll(() => hosts.dispose());

const REGEX = { kind: "regex", text: "abc", strict: true };
const id = (piece: string) => vocab.indexOf(piece);
const isAllowed = (mask: Int32Array | undefined, token: number) =>
  mask !== undefined && ((mask[token >> 5]! >>> (token & 31)) & 1) === 1;

/** A step scheduling `seqIds` for one sampled token each, new sequences as given. */
function step(
  seqIds: number[],
  newSequences: { seqId: number; outputTokenIds?: number[]; grammar?: typeof REGEX }[] = [],
  extra: Partial<StepRequest> = {},
) {
  const req = StepRequest.fromPartial({
    newSequences: newSequences.map((s) => ({ promptTokenIds: [1], ...s })),
    sequences: seqIds.map((seqId) => ({ seqId, tokenIds: [1], doSample: true })),
    ...extra,
  });
  const input = {
    samples: seqIds.map(() => ({ params: {}, outputIndex: 0 })),
  } as unknown as StepInput;
  return { req, input };
}

async function masksOf(table: GrammarTable, s: ReturnType<typeof step>) {
  const out = await table.withMasks(s.req, s.input, 512);
  return out.samples.map((x) => x?.allowedTokenBitmask);
}

describe("GrammarTable", () => {
  it("masks constrained sequences only and advances with accepted tokens", async () => {
    const table = new GrammarTable(hosts);
    const s = step([1, 2], [{ seqId: 1, grammar: REGEX }, { seqId: 2 }]);
    expect(await table.prepare(s.req)).toEqual([]);
    const [m1, m2] = await masksOf(table, s);
    expect(m2).toBeUndefined();
    expect(isAllowed(m1, id("a"))).toBe(true);
    expect(isAllowed(m1, id("b"))).toBe(false);
    table.accept(1, id("a"));
    const [next] = await masksOf(table, step([1]));
    expect(isAllowed(next, id("b"))).toBe(true);
    expect(isAllowed(next, id("a"))).toBe(false);
  });

  it("deferred masks: posted empty and shared, filled and flagged while the step runs", async () => {
    const table = new GrammarTable(hosts);
    const s = step([1, 2], [{ seqId: 1, grammar: REGEX }, { seqId: 2 }]);
    await table.prepare(s.req);
    const deferred = table.deferMasks(s.req, s.input, 512)!;
    const words = deferred.input.samples[0]!.allowedTokenBitmask!;
    expect(words.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(deferred.input.samples[1]!.allowedTokenBitmask).toBeUndefined();
    expect(Atomics.load(deferred.input.masksReady!, 0)).toBe(0);
    expect(isAllowed(words, id("a"))).toBe(false); // not computed yet
    await deferred.fill();
    expect(Atomics.load(deferred.input.masksReady!, 0)).toBe(1);
    const [expected] = await masksOf(table, s);
    expect([...words]).toEqual([...expected!]);
    expect(isAllowed(words, id("a"))).toBe(true);
    // A mask wider than the vocabulary the step was sized for fails the flag, never hangs it.
    const narrow = table.deferMasks(s.req, s.input, 32)!;
    await narrow.fill();
    expect(Atomics.load(narrow.input.masksReady!, 0)).toBe(2);
    // Nothing constrained: no deferral.
    expect(table.deferMasks(step([2]).req, step([2]).input, 512)).toBeNull();
  });

  it("prepareGrammar compiles ahead of the step, and names what cannot be compiled", async () => {
    const table = new GrammarTable(hosts);
    const spec = { kind: "regex", text: "[0-9]{3}", strict: true };
    expect(await table.prepareGrammar(spec)).toBeNull();
    const compiles = hosts.compileCount;
    await table.prepare(step([], [{ seqId: 9, grammar: spec }]).req);
    expect(hosts.compileCount).toBe(compiles); // the step found it compiled
    expect(await table.prepareGrammar({ kind: "regex", text: "(", strict: true })).toMatch(
      /cannot compile the regex grammar/,
    );
    expect(await table.prepareGrammar({ kind: "yaml", text: "", strict: true })).toMatch(
      /unknown grammar kind/,
    );
    expect(await new GrammarTable(null).prepareGrammar(spec)).toMatch(/no grammar engine/);
  });

  it("replays the tokens generated before a preemption into a fresh matcher", async () => {
    const table = new GrammarTable(hosts);
    await table.prepare(step([], [{ seqId: 7, grammar: REGEX }]).req);
    table.accept(7, id("a"));
    // Preempted: removed, then resumed as a new sequence with its output so far.
    const resumed = step([7], [{ seqId: 7, grammar: REGEX, outputTokenIds: [id("a"), id("b")] }], {
      removedSeqIds: [7],
    });
    expect(await table.prepare(resumed.req)).toEqual([]);
    const [mask] = await masksOf(table, resumed);
    expect(isAllowed(mask, id("c"))).toBe(true);
    expect(isAllowed(mask, id("a"))).toBe(false);
  });

  it("fails a sequence whose grammar does not compile or whose replay it refuses; reset drops all", async () => {
    const table = new GrammarTable(hosts);
    await table.prepare(step([], [], { reset: true }).req); // the earlier tests' sequences
    const bad = step(
      [],
      [
        { seqId: 1, grammar: { kind: "ebnf", text: "root ::= (", strict: true } },
        { seqId: 2, grammar: REGEX, outputTokenIds: [id("b")] },
        { seqId: 3, grammar: { kind: "yaml", text: "", strict: true } },
      ],
    );
    const failures = await table.prepare(bad.req);
    expect(failures.map((f) => f.seqId)).toEqual([1, 2, 3]);
    expect(failures[2]!.message).toMatch(/unknown grammar kind/);
    await table.prepare(step([], [{ seqId: 4, grammar: REGEX }]).req);
    expect(table.numSequences).toBe(1);
    await table.prepare(step([], [], { reset: true }).req);
    expect(table.numSequences).toBe(0);
  });

  it("without an engine a constrained sequence is refused", async () => {
    const failures = await new GrammarTable(null).prepare(
      step([], [{ seqId: 1, grammar: REGEX }]).req,
    );
    expect(failures[0]!.message).toMatch(/no grammar engine/);
  });
});
