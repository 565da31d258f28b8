/**
 * Branded ids: plain numbers and strings at runtime, but the type checker keeps them apart, so a
 * block id can never be passed where a sequence id is expected.
 */
declare const brand: unique symbol;
type Branded<T, B extends string> = T & { readonly [brand]: B };

/** Index of a KV block in the worker's pool: 0 ≤ id < numBlocks. */
export type BlockId = Branded<number, "BlockId">;
/** The gateway's request id; unique among a scheduler's unfinished requests. */
export type RequestId = Branded<string, "RequestId">;
/** One sampled sequence of a request (n > 1 gives n of them). Assigned by the scheduler, never reused. */
export type SeqId = Branded<number, "SeqId">;
/** A LoRA adapter's name; `null` wherever an adapter is optional means the base model. */
export type AdapterId = Branded<string, "AdapterId">;

export const asBlockId = (id: number): BlockId => id as BlockId;
export const asRequestId = (id: string): RequestId => id as RequestId;
export const asSeqId = (id: number): SeqId => id as SeqId;
export const asAdapterId = (id: string): AdapterId => id as AdapterId;
