import type { GrammarEngineOptions, GrammarVocab } from "./grammar-engine";
import type { GrammarSpec } from "./grammar-spec";

/** What a grammar host thread starts from (workerData). */
export interface GrammarHostInit {
  readonly vocab: GrammarVocab;
  readonly options: GrammarEngineOptions;
}

/** One sequence's next-token mask, written by the host into `words` (shared memory). */
export interface MaskJob {
  readonly seqId: number;
  readonly words: Int32Array;
}

/**
 * Messages to a host. The host handles them one at a time in arrival order, except that a
 * `compile` waits behind every other message already queued (masks are never held back by a
 * compile that arrived before them but has not started).
 *
 * - `compile`: compile `spec` into the host's cache; answered.
 * - `open`: a fresh matcher for `seqId` (compiling `spec` when needed), then `replay` accepted
 *   in order; answered, with an error when the grammar does not compile or refuses a token.
 * - `accept`: advance `seqId` by `tokenId`; not answered. The host computes the next mask
 *   right away, so that the next `masks` finds it ready.
 * - `drop`: forget the sequences; not answered.
 * - `masks`: write each job's mask (all tokens allowed once its grammar is complete); answered.
 */
export type GrammarHostRequest =
  | { readonly type: "compile"; readonly id: number; readonly spec: GrammarSpec }
  | {
      readonly type: "open";
      readonly id: number;
      readonly seqId: number;
      readonly spec: GrammarSpec;
      readonly replay: readonly number[];
    }
  | { readonly type: "accept"; readonly seqId: number; readonly tokenId: number }
  | { readonly type: "drop"; readonly seqIds: readonly number[] }
  | { readonly type: "masks"; readonly id: number; readonly jobs: readonly MaskJob[] };

/** Messages from a host: `ready` once (or `init-error`), then one `done` per answered request. */
export type GrammarHostReply =
  | { readonly type: "ready" }
  | { readonly type: "init-error"; readonly message: string }
  | { readonly type: "done"; readonly id: number; readonly error: string | null };
