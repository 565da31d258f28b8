import type { StepInput } from "../backend";
import { numVerifiedRows } from "../cpu/verify-step";

const MAGIC = 0x4b545053; // "KTPS"
const HEADER_INTS = 7;

/**
 * What rank 0 forwards to the other ranks each step (ADR 0018): the resolved forward-pass
 * input, not the router's delta. Only rank 0 keeps per-sequence state and samples, so the
 * other ranks need token ids, positions, KV slots, block tables and block copies, and how many
 * logit rows each sequence samples (every rank computes its vocabulary slice of them).
 *
 * Layout (int32): [magic, stepNo, numTokens, numSeqs, numCopyInts, blockTablesLen, 0] then
 * tokenIds, positions, slotMapping [numTokens each], queryLens, contextLens [numSeqs each],
 * blockTableOffsets [numSeqs + 1], blockTables, blockCopies, logitRows [numSeqs].
 */
export function encodeStep(stepNo: number, input: StepInput): Uint8Array {
  const numTokens = input.tokenIds.length;
  const numSeqs = input.queryLens.length;
  const parts = [
    input.tokenIds,
    input.positions,
    input.slotMapping,
    input.queryLens,
    input.contextLens,
    input.blockTableOffsets,
    input.blockTables,
    input.blockCopies,
    Int32Array.from(input.samples, (req) => (req === null ? 0 : numVerifiedRows(req))),
  ];
  let len = HEADER_INTS;
  for (const p of parts) len += p.length;
  const out = new Int32Array(len);
  out.set([
    MAGIC,
    stepNo,
    numTokens,
    numSeqs,
    input.blockCopies.length,
    input.blockTables.length,
    0,
  ]);
  let off = HEADER_INTS;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return new Uint8Array(out.buffer);
}

export interface DecodedStep {
  readonly stepNo: number;
  readonly input: StepInput;
}

/**
 * The inverse of encodeStep; every sample request is null (ranks > 0 do not sample) and
 * `logitRows` says which rows rank 0 samples.
 */
export function decodeStep(bytes: Uint8Array): DecodedStep {
  if (bytes.byteLength % 4 !== 0) throw new Error("tensor-parallel step: torn message");
  const ints = new Int32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  const [magic, stepNo, numTokens, numSeqs, numCopyInts, blockTablesLen] = ints;
  if (magic !== MAGIC) throw new Error("tensor-parallel step: bad magic");
  let off = HEADER_INTS;
  const take = (n: number) => {
    const part = ints.slice(off, off + n);
    off += n;
    return part;
  };
  const input: StepInput = {
    tokenIds: take(numTokens!),
    positions: take(numTokens!),
    slotMapping: take(numTokens!),
    queryLens: take(numSeqs!),
    contextLens: take(numSeqs!),
    blockTableOffsets: take(numSeqs! + 1),
    blockTables: take(blockTablesLen!),
    blockCopies: take(numCopyInts!),
    samples: new Array<null>(numSeqs!).fill(null),
    logitRows: take(numSeqs!),
  };
  if (off !== ints.length) throw new Error("tensor-parallel step: length mismatch");
  return { stepNo: stepNo!, input };
}
