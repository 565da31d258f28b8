import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  asRequestId,
  type EngineEvent,
  type NewRequest,
  type NgramSpeculation,
  type RequestId,
  Scheduler,
  type SchedulerConfig,
  type StepPlan,
} from "../src/index";
import { expectedKv, type FakeToken, fakeNextToken } from "./fake-worker";
import { SpecFakeWorker } from "./spec-fake-worker";

type Sampling = { readonly seed: number };

const NGRAM: NgramSpeculation = {
  method: "ngram",
  numSpeculativeTokens: 4,
  promptLookupMin: 1,
  promptLookupMax: 3,
  isAdaptive: false,
};

/** The fake model over a tiny vocabulary loops quickly, so prompt lookup finds matches. */
const VOCAB = 6;

function greedy(prompt: readonly number[], numTokens: number, seqIndex = 0, banned: number[] = []) {
  const tokens = [...prompt];
  while (tokens.length < prompt.length + numTokens) {
    const kv = expectedKv("|", tokens);
    tokens.push(fakeNextToken(kv[kv.length - 1]!, seqIndex, VOCAB, banned));
  }
  return tokens.slice(prompt.length);
}

class SpecDriver {
  readonly scheduler: Scheduler<Sampling, FakeToken>;
  readonly worker: SpecFakeWorker;
  readonly outputs = new Map<string, number[][]>();
  readonly prompts = new Map<string, readonly number[]>();
  readonly events: EngineEvent<FakeToken>[] = [];
  numDraftTokens = 0;
  numAcceptedTokens = 0;
  /** Blocks the worker was told to drop after rejected drafts. */
  numDroppedBlocks = 0;

  constructor(config: Omit<SchedulerConfig, "clock">) {
    let now = 0;
    this.scheduler = new Scheduler({ ...config, clock: () => now++ });
    this.worker = new SpecFakeWorker(config.blockSize, config.numBlocks, VOCAB, (seq) => [
      ...this.prompts.get(seq.requestId)!,
      ...this.outputs.get(seq.requestId)![seq.seqIndex]!,
    ]);
  }

  add(id: string, fields: Omit<NewRequest<Sampling>, "requestId" | "sampling">): RequestId {
    const requestId = asRequestId(id);
    expect(this.scheduler.addRequest({ ...fields, requestId, sampling: { seed: 0 } })).toEqual({
      isAccepted: true,
    });
    this.prompts.set(id, fields.promptTokenIds);
    this.outputs.set(
      id,
      Array.from({ length: fields.n ?? 1 }, () => []),
    );
    return requestId;
  }

  step(between?: (plan: StepPlan<Sampling>) => void): void {
    const plan = this.scheduler.schedule();
    for (const s of plan.seqs) this.numDroppedBlocks += s.numDroppedBlocks ?? 0;
    const results = this.worker.step(plan);
    between?.(plan);
    const events = this.scheduler.commit(plan, results);
    for (const event of events) {
      this.events.push(event);
      if (event.kind !== "token") continue;
      const out = this.outputs.get(event.requestId)![event.seqIndex]!;
      expect(event.outputIndex).toBe(out.length);
      out.push(event.sampled.tokenId);
    }
    for (const o of this.scheduler.takeSpecOutcomes()) {
      this.numDraftTokens += o.numDraftTokens;
      this.numAcceptedTokens += o.numAcceptedTokens;
    }
    this.scheduler.checkInvariants();
  }

  drain(maxSteps = 500): void {
    for (let i = 0; this.scheduler.hasPendingWork(); i++) {
      if (i >= maxSteps) throw new Error("not drained");
      this.step();
    }
  }
}

const BASE = {
  numBlocks: 64,
  blockSize: 4,
  maxNumBatchedTokens: 64,
  maxNumSeqs: 8,
  maxModelLen: 128,
};

describe("speculative decoding in the scheduler (n-gram drafts, fake model)", () => {
  it("reproduces greedy output exactly while accepting several drafts per step", () => {
    const d = new SpecDriver({ ...BASE, speculation: NGRAM });
    const prompt = [1, 2, 3, 1, 2, 3, 4];
    d.add("a", { promptTokenIds: prompt, maxTokens: 40 });
    d.drain();
    expect(d.outputs.get("a")![0]).toEqual(greedy(prompt, 40));
    // Drafts were verified and some accepted (the hashed fake model agrees with a draft 1 in 6).
    expect(d.numDraftTokens).toBeGreaterThan(20);
    expect(d.numAcceptedTokens).toBeGreaterThan(0);
    expect(d.scheduler.stats().numUsedBlocks).toBe(0);
  });

  it("stops at a stop token inside an accepted run and never passes max_tokens", () => {
    const prompt = [1, 2, 3, 1, 2, 3, 4];
    const plain = greedy(prompt, 30);
    const stopId = plain[12]!;
    const firstStop = plain.indexOf(stopId);
    const d = new SpecDriver({ ...BASE, speculation: NGRAM });
    d.add("s", { promptTokenIds: prompt, maxTokens: 30, stopTokenIds: [stopId] });
    d.add("m", { promptTokenIds: prompt, maxTokens: 9 });
    d.drain();
    expect(d.outputs.get("s")![0]).toEqual(plain.slice(0, firstStop + 1));
    expect(d.outputs.get("m")![0]).toEqual(plain.slice(0, 9));
    expect(d.scheduler.stats().numUsedBlocks).toBe(0);
  });

  it("n > 1 and opt-out: every sequence matches its own plain continuation", () => {
    const d = new SpecDriver({ ...BASE, speculation: NGRAM });
    const prompt = [5, 1, 5, 1, 2];
    d.add("n", { promptTokenIds: prompt, maxTokens: 20, n: 3 });
    d.add("o", { promptTokenIds: prompt, maxTokens: 20, isSpeculative: false });
    d.drain();
    for (let i = 0; i < 3; i++) expect(d.outputs.get("n")![i]).toEqual(greedy(prompt, 20, i));
    expect(d.outputs.get("o")![0]).toEqual(greedy(prompt, 20));
    expect(d.scheduler.stats().numUsedBlocks).toBe(0);
  });

  it("abort between a verification step's plan and its commit leaks no blocks", () => {
    const d = new SpecDriver({ ...BASE, speculation: NGRAM });
    const id = d.add("x", { promptTokenIds: [1, 2, 3, 1, 2, 3], maxTokens: 50 });
    d.add("y", { promptTokenIds: [2, 3, 2, 3], maxTokens: 50 });
    let isAborted = false;
    for (let i = 0; i < 100 && !isAborted; i++) {
      d.step((plan) => {
        const entry = plan.seqs.find((s) => s.requestId === id);
        if ((entry?.sample?.draftTokenIds?.length ?? 0) === 0) return;
        expect(d.scheduler.stats().numUsedBlocks).toBeGreaterThan(0);
        isAborted = d.scheduler.abortRequest(id);
      });
    }
    expect(isAborted).toBe(true);
    d.scheduler.abortRequest(asRequestId("y"));
    d.drain();
    expect(d.scheduler.stats().numUsedBlocks).toBe(0);
  });

  it("property: with preemption, n > 1 and stop ids, outputs equal plain greedy decoding", () => {
    const totals = { preemptions: 0, accepted: 0, droppedBlocks: 0 };
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            prompt: fc.array(fc.integer({ min: 0, max: VOCAB - 1 }), {
              minLength: 1,
              maxLength: 12,
            }),
            maxTokens: fc.integer({ min: 1, max: 24 }),
            n: fc.integer({ min: 1, max: 2 }),
            stop: fc.option(fc.integer({ min: 0, max: VOCAB - 1 }), { nil: undefined }),
          }),
          { minLength: 1, maxLength: 5 },
        ),
        fc.integer({ min: 10, max: 24 }),
        (reqs, numBlocks) => {
          const d = new SpecDriver({
            numBlocks,
            blockSize: 2,
            maxNumBatchedTokens: 12,
            maxNumSeqs: 4,
            maxModelLen: 20,
            speculation: { ...NGRAM, numSpeculativeTokens: 3 },
          });
          reqs.forEach((r, i) => {
            d.add(`q${i}`, {
              promptTokenIds: r.prompt.slice(0, 19),
              maxTokens: r.maxTokens,
              n: r.n,
              stopTokenIds: r.stop === undefined ? [] : [r.stop],
            });
          });
          d.drain(2000);
          totals.preemptions += d.scheduler.stats().numPreemptions;
          totals.accepted += d.numAcceptedTokens;
          totals.droppedBlocks += d.numDroppedBlocks;
          reqs.forEach((r, i) => {
            const prompt = r.prompt.slice(0, 19);
            for (let s = 0; s < r.n; s++) {
              const limit = Math.min(r.maxTokens, 20 - prompt.length);
              const plain = greedy(prompt, limit, s);
              const at = r.stop === undefined ? -1 : plain.indexOf(r.stop);
              const expected = at < 0 ? plain : plain.slice(0, at + 1);
              expect(d.outputs.get(`q${i}`)![s]).toEqual(expected);
            }
          });
          expect(d.scheduler.stats().numUsedBlocks).toBe(0);
        },
      ),
      { numRuns: 150, seed: 12 },
    );
    // The runs exercised what the property is about: preemption, accepted drafts, rollback.
    expect(totals.preemptions).toBeGreaterThan(0);
    expect(totals.accepted).toBeGreaterThan(0);
    expect(totals.droppedBlocks).toBeGreaterThan(0);
  });
});
