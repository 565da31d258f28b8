/**
 * Counter-based random numbers for sampling (ADR 0006).
 *
 * A draw is a pure function of (seed, outputIndex, drawIndex): Philox2x32-10 (Salmon et al.,
 * "Parallel random numbers: as easy as 1, 2, 3", SC'11; the Random123 family that cuRAND and
 * PyTorch on CUDA use) keyed by the 32-bit seed, with the 64-bit counter (outputIndex,
 * drawIndex). No state is carried between calls, so a seeded sequence draws the same numbers
 * whatever else is in the batch, in whatever order rows are sampled, and after a preemption
 * recomputes its tokens.
 *
 * Everything is 32-bit integer math (Math.imul plus an exact 32×32→64 high word in doubles):
 * no BigInt, identical results on every JS engine.
 */

const PHILOX_M = 0xd256d193;
const PHILOX_W = 0x9e3779b9;
const NUM_ROUNDS = 10;
const TWO_POW_16 = 65536;
const TWO_POW_32 = 4294967296;
/** 2^-53: turns a 53-bit integer into a double in [0, 1). */
const INV_TWO_POW_53 = 1 / 9007199254740992;

/** High 32 bits of the 64-bit product of two unsigned 32-bit integers, exact. */
function mulHi32(a: number, b: number): number {
  const aHi = a >>> 16;
  const aLo = a & 0xffff;
  const bHi = b >>> 16;
  const bLo = b & 0xffff;
  // Every partial product is < 2^32 and every sum below < 2^53, so doubles hold them exactly.
  const mid = aHi * bLo + aLo * bHi;
  const low = aLo * bLo + (mid % TWO_POW_16) * TWO_POW_16;
  return (aHi * bHi + Math.floor(mid / TWO_POW_16) + Math.floor(low / TWO_POW_32)) >>> 0;
}

/**
 * The two 32-bit output words of Philox2x32-10 for counter (ctr0, ctr1) and key, written into
 * `out` (length ≥ 2). Matches Random123's known-answer vectors (see rng.test.ts).
 */
export function philox2x32(ctr0: number, ctr1: number, key: number, out: Uint32Array): void {
  let x0 = ctr0 >>> 0;
  let x1 = ctr1 >>> 0;
  let k = key >>> 0;
  for (let round = 0; round < NUM_ROUNDS; round++) {
    if (round > 0) k = (k + PHILOX_W) >>> 0;
    const hi = mulHi32(PHILOX_M, x0);
    const lo = Math.imul(PHILOX_M, x0) >>> 0;
    x0 = (hi ^ k ^ x1) >>> 0;
    x1 = lo;
  }
  out[0] = x0;
  out[1] = x1;
}

// One shared output buffer: JS is single-threaded and philox2x32 never yields, so reuse is safe
// and uniform01 allocates nothing.
const words = new Uint32Array(2);

/**
 * A uniform double in [0, 1) with 53 random bits, determined only by its arguments.
 *
 * @param seed the sequence's seed; coerced to an unsigned 32-bit integer.
 * @param outputIndex index of the generated token being sampled (0 for the first); an integer
 *   in [0, 2^32).
 * @param drawIndex which draw for that token, for samplers that need more than one (for example
 *   rejection sampling of draft tokens); 0 by default.
 */
export function uniform01(seed: number, outputIndex: number, drawIndex = 0): number {
  philox2x32(outputIndex, drawIndex, seed, words);
  const hi27 = words[0]! >>> 5;
  const lo26 = words[1]! >>> 6;
  return (hi27 * 67108864 + lo26) * INV_TWO_POW_53;
}
