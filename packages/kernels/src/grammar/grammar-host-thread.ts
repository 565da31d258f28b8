import { parentPort, workerData } from "node:worker_threads";
import { GrammarEngine, type SequenceGrammar } from "./grammar-engine";
import type {
  GrammarHostInit,
  GrammarHostReply,
  GrammarHostRequest,
} from "./grammar-host-protocol";

/**
 * A grammar host (ADR 0016): one thread with its own XGrammar WebAssembly instance, holding
 * compiled grammars and the matchers of the sequences that use them. Compiled grammars cannot
 * leave the instance that compiled them, so a sequence's matcher lives on the host that
 * compiled its grammar. See grammar-host-protocol.ts for the messages.
 */
const port = parentPort;
if (port === null) throw new Error("grammar-host-thread runs as a worker thread");
const init = workerData as GrammarHostInit;

function reply(msg: GrammarHostReply): void {
  port!.postMessage(msg);
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

let engine: GrammarEngine;
try {
  engine = await GrammarEngine.create(init.vocab, init.options);
} catch (err) {
  reply({ type: "init-error", message: messageOf(err) });
  throw err;
}

const seqIdToGrammar = new Map<number, SequenceGrammar>();
/** Next-token masks computed ahead (after `open` and `accept`), for the next `masks`. */
const seqIdToNextMask = new Map<number, Int32Array>();

async function nextMaskOf(seqId: number, grammar: SequenceGrammar): Promise<Int32Array> {
  let mask = seqIdToNextMask.get(seqId);
  if (!mask) {
    mask = await grammar.nextTokenBitmask();
    seqIdToNextMask.set(seqId, mask);
  }
  return mask;
}

function drop(seqId: number): void {
  seqIdToGrammar.get(seqId)?.dispose();
  seqIdToGrammar.delete(seqId);
  seqIdToNextMask.delete(seqId);
}

async function open(msg: Extract<GrammarHostRequest, { type: "open" }>): Promise<string | null> {
  drop(msg.seqId);
  let grammar: SequenceGrammar;
  try {
    grammar = await engine.createMatcher(msg.spec);
  } catch (err) {
    return messageOf(err);
  }
  for (const tokenId of msg.replay) {
    if (grammar.isTerminated) break;
    if (!grammar.accept(tokenId)) {
      grammar.dispose();
      return `output token ${tokenId} does not match the sequence's grammar`;
    }
  }
  seqIdToGrammar.set(msg.seqId, grammar);
  return null;
}

async function writeMasks(msg: Extract<GrammarHostRequest, { type: "masks" }>): Promise<void> {
  for (const job of msg.jobs) {
    const grammar = seqIdToGrammar.get(job.seqId);
    if (!grammar) throw new Error(`sequence ${job.seqId} has no grammar on this host`);
    if (grammar.isTerminated) {
      job.words.fill(-1); // complete: every token allowed
      continue;
    }
    const mask = await nextMaskOf(job.seqId, grammar);
    if (mask.length > job.words.length) {
      throw new Error("a grammar mask is wider than the vocabulary");
    }
    job.words.set(mask);
  }
}

async function handle(msg: GrammarHostRequest): Promise<void> {
  switch (msg.type) {
    case "compile":
      try {
        await engine.compile(msg.spec);
        reply({ type: "done", id: msg.id, error: null });
      } catch (err) {
        reply({ type: "done", id: msg.id, error: messageOf(err) });
      }
      return;
    case "open": {
      const error = await open(msg);
      reply({ type: "done", id: msg.id, error });
      // The first mask, ahead of the step that needs it.
      const grammar = seqIdToGrammar.get(msg.seqId);
      if (error === null && grammar && !grammar.isTerminated) {
        await nextMaskOf(msg.seqId, grammar);
      }
      return;
    }
    case "accept": {
      const grammar = seqIdToGrammar.get(msg.seqId);
      seqIdToNextMask.delete(msg.seqId);
      if (!grammar || grammar.isTerminated) return;
      grammar.accept(msg.tokenId);
      // Compute the next mask now, while the worker answers the step and the router plans.
      if (!grammar.isTerminated && pending.length === 0) await nextMaskOf(msg.seqId, grammar);
      return;
    }
    case "drop":
      for (const seqId of msg.seqIds) drop(seqId);
      return;
    case "masks":
      try {
        await writeMasks(msg);
        reply({ type: "done", id: msg.id, error: null });
      } catch (err) {
        reply({ type: "done", id: msg.id, error: messageOf(err) });
      }
      return;
  }
}

/**
 * Messages waiting to be handled, in arrival order except that compiles go last: a compile may
 * take a second on a large vocabulary, and masks queued behind it would hold up the step.
 */
const pending: GrammarHostRequest[] = [];
let isRunning = false;

async function drain(): Promise<void> {
  if (isRunning) return;
  isRunning = true;
  try {
    for (;;) {
      const index = pending.findIndex((msg) => msg.type !== "compile");
      const [msg] = pending.splice(index === -1 ? 0 : index, 1);
      if (msg === undefined) return;
      await handle(msg);
    }
  } finally {
    isRunning = false;
  }
}

port.on("message", (msg: GrammarHostRequest) => {
  pending.push(msg);
  void drain();
});
reply({ type: "ready" });
