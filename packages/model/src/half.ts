/** Scratch views for reading an f32's bits. */
const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/**
 * The IEEE half-precision bits of x, rounded to nearest, ties to even (as a C cast does):
 * overflow gives ±infinity, values below the smallest subnormal ±0, NaN a quiet NaN.
 */
export function f32ToF16Bits(x: number): number {
  f32Scratch[0] = x;
  const bits = u32Scratch[0]!;
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  const mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0);
  const e = exp - 127 + 15; // the half's biased exponent
  if (e >= 0x1f) return sign | 0x7c00;
  // A subnormal half keeps (1.mant) shifted right; a normal one drops 13 mantissa bits.
  const shift = e <= 0 ? 14 - e : 13;
  if (shift > 24) return sign;
  const full = e <= 0 ? mant | 0x800000 : mant;
  let half = (e <= 0 ? 0 : e << 10) | (full >>> shift);
  const rest = full & ((1 << shift) - 1);
  const halfway = 1 << (shift - 1);
  if (rest > halfway || (rest === halfway && (half & 1) === 1)) half++; // may carry into exp
  return sign | half;
}

/** The value of IEEE half-precision bits `h` (exact: every half is an f32). */
export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 31) return mant === 0 ? sign * Number.POSITIVE_INFINITY : Number.NaN;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}
