import type { StepInput } from "../backend";

/** What a step is checked against: the backend's capacity and the model's vocabulary. */
export interface StepLimits {
  readonly numBlocks: number;
  readonly blockSize: number;
  readonly vocabSize: number;
  readonly maxModelLen: number;
}

function fail(message: string): never {
  throw new Error(`invalid step input: ${message}`);
}

function checkLengths(input: StepInput): number {
  const numSeqs = input.queryLens.length;
  const numTokens = input.tokenIds.length;
  if (numSeqs === 0) fail("no sequences");
  if (input.contextLens.length !== numSeqs) {
    fail(`contextLens has ${input.contextLens.length} entries, queryLens ${numSeqs}`);
  }
  if (input.samples.length !== numSeqs) {
    fail(`samples has ${input.samples.length} entries, queryLens ${numSeqs}`);
  }
  if (input.blockTableOffsets.length !== numSeqs + 1) {
    fail(
      `blockTableOffsets has ${input.blockTableOffsets.length} entries, expected ${numSeqs + 1}`,
    );
  }
  if (input.positions.length !== numTokens || input.slotMapping.length !== numTokens) {
    fail(
      `tokenIds (${numTokens}), positions (${input.positions.length}) and slotMapping (${input.slotMapping.length}) differ in length`,
    );
  }
  if (input.blockCopies.length % 2 !== 0) fail("blockCopies has an odd length");
  if (input.loraSlots !== undefined && input.loraSlots.length !== numSeqs) {
    fail(`loraSlots has ${input.loraSlots.length} entries, queryLens ${numSeqs}`);
  }
  return numTokens;
}

function checkBlockId(id: number, limits: StepLimits, what: string): void {
  if (!Number.isInteger(id) || id < 0 || id >= limits.numBlocks) {
    fail(`${what} ${id} is out of range [0, ${limits.numBlocks})`);
  }
}

/** One sequence: lengths, its block table, and the positions and slots of its tokens. */
function checkSequence(input: StepInput, s: number, tokenStart: number, limits: StepLimits): void {
  const { blockSize } = limits;
  const queryLen = input.queryLens[s]!;
  const contextLen = input.contextLens[s]!;
  if (queryLen < 1) fail(`sequence ${s} has queryLen ${queryLen}`);
  if (contextLen < queryLen || contextLen > limits.maxModelLen) {
    fail(
      `sequence ${s} has contextLen ${contextLen}, outside [${queryLen}, ${limits.maxModelLen}]`,
    );
  }
  const tableStart = input.blockTableOffsets[s]!;
  const tableEnd = input.blockTableOffsets[s + 1]!;
  if (tableEnd < tableStart) fail(`blockTableOffsets decrease at sequence ${s}`);
  if ((tableEnd - tableStart) * blockSize < contextLen) {
    fail(
      `sequence ${s} has ${tableEnd - tableStart} blocks of ${blockSize}, too few for contextLen ${contextLen}`,
    );
  }
  for (let b = tableStart; b < tableEnd; b++) {
    checkBlockId(input.blockTables[b]!, limits, `block id (sequence ${s})`);
  }
  const prefixLen = contextLen - queryLen;
  for (let i = 0; i < queryLen; i++) {
    const t = tokenStart + i;
    const pos = prefixLen + i;
    if (input.positions[t] !== pos) {
      fail(`token ${t} (sequence ${s}) has position ${input.positions[t]}, expected ${pos}`);
    }
    const block = input.blockTables[tableStart + Math.floor(pos / blockSize)]!;
    const expectedSlot = block * blockSize + (pos % blockSize);
    if (input.slotMapping[t] !== expectedSlot) {
      fail(
        `token ${t} (sequence ${s}) has slot ${input.slotMapping[t]}, its block table gives ${expectedSlot}`,
      );
    }
    const tokenId = input.tokenIds[t]!;
    if (!Number.isInteger(tokenId) || tokenId < 0 || tokenId >= limits.vocabSize) {
      fail(`token ${t} has id ${tokenId}, outside the vocabulary [0, ${limits.vocabSize})`);
    }
  }
}

/** Speculative decoding: a sequence's drafts are the tail of its query (ADR 0017). */
function checkDrafts(input: StepInput, s: number, tokenEnd: number): void {
  const drafts = input.samples[s]?.draftTokenIds;
  if (drafts === undefined || drafts.length === 0) return;
  if (drafts.length >= input.queryLens[s]!) {
    fail(`sequence ${s} has ${drafts.length} drafts in a query of ${input.queryLens[s]} tokens`);
  }
  for (let j = 0; j < drafts.length; j++) {
    if (input.tokenIds[tokenEnd - drafts.length + j] !== drafts[j]) {
      fail(`sequence ${s}: draft ${j} is not the query token it verifies`);
    }
  }
}

/**
 * Throws an Error ("invalid step input: …") unless every length agrees, every block id and
 * slot is in range, each token's slot is the one its block table implies, and positions run
 * contextLen − queryLen .. contextLen − 1. Runs before anything is written, so a rejected step
 * leaves the KV pool untouched. Returns the number of tokens.
 */
export function validateStepInput(input: StepInput, limits: StepLimits): number {
  const numTokens = checkLengths(input);
  const numSeqs = input.queryLens.length;
  if (input.blockTableOffsets[0] !== 0) fail("blockTableOffsets[0] is not 0");
  if (input.blockTableOffsets[numSeqs] !== input.blockTables.length) {
    fail(
      `blockTableOffsets ends at ${input.blockTableOffsets[numSeqs]}, blockTables has ${input.blockTables.length} ids`,
    );
  }
  let tokenStart = 0;
  for (let s = 0; s < numSeqs; s++) {
    const queryLen = input.queryLens[s]!;
    if (tokenStart + queryLen > numTokens) {
      fail(`queryLens add up to more than the ${numTokens} tokens`);
    }
    checkSequence(input, s, tokenStart, limits);
    checkDrafts(input, s, tokenStart + queryLen);
    tokenStart += queryLen;
  }
  if (tokenStart !== numTokens) fail(`queryLens add up to ${tokenStart}, not ${numTokens} tokens`);
  for (let c = 0; c < input.blockCopies.length; c++) {
    checkBlockId(input.blockCopies[c]!, limits, "block copy id");
  }
  return numTokens;
}
