import type { LoraAdapter, LoraProjection, LoraTarget } from "@kiln/model";
import type { LoraGroups, LoraOutputView } from "./lora-slots";
import type { NativeAddon } from "./native-addon";

const NO_MATRIX = new Uint16Array(0);

/** One projection as the native kernel reads it: IEEE half floats. */
interface HalfProjection {
  /** [rank, inF] A. */
  readonly a: Uint16Array;
  /** [rank, outF] Bᵀ, so the expand runs along contiguous output columns. */
  readonly bt: Uint16Array;
}

/**
 * LoraSlotTable's native path: one `loraApply` call (native/lora.cc, SGMV/BGMV) per projection
 * with every group of the step, on the gemm's OpenMP team. Decoding many adapters is bound by
 * the bytes of A and B read per token, so the kernel reads them as half floats; `prepare` makes
 * that copy (A, and B transposed) once per adapter, when it enters a slot, and the copy lives as
 * long as the adapter's projection does (a WeakMap).
 */
export class NativeLoraKernel {
  private readonly halves = new WeakMap<LoraProjection, HalfProjection>();
  private lastGroups: LoraGroups | null = null;
  private lastOffsets = new Int32Array(1);

  constructor(
    private readonly addon: NativeAddon,
    private readonly numThreads: number,
  ) {}

  /** Makes the half-float copies of every projection of `adapter` (idempotent). */
  prepare(adapter: LoraAdapter): void {
    for (const layer of adapter.layers) {
      for (const proj of Object.values(layer)) {
        if (proj !== undefined) this.halfOf(proj, adapter.rank);
      }
    }
  }

  /** `adapters[g]` is the adapter of group g. Same contract as LoraSlotTable.apply. */
  apply(
    groups: LoraGroups,
    adapters: readonly LoraAdapter[],
    layer: number,
    target: LoraTarget,
    view: LoraOutputView,
  ): void {
    const numGroups = groups.slots.length;
    const as: Uint16Array[] = [];
    const bts: Uint16Array[] = [];
    const ranks = new Int32Array(numGroups);
    const scales = new Float32Array(numGroups);
    let inF = 0;
    let outF = 0;
    for (let g = 0; g < numGroups; g++) {
      const adapter = adapters[g]!;
      const proj = adapter.layers[layer]![target];
      if (proj === undefined) {
        as.push(NO_MATRIX);
        bts.push(NO_MATRIX);
        continue;
      }
      const half = this.halfOf(proj, adapter.rank);
      as.push(half.a);
      bts.push(half.bt);
      ranks[g] = adapter.rank;
      scales[g] = adapter.scale;
      inF = proj.a.length / adapter.rank;
      outF = proj.b.length / adapter.rank;
    }
    if (inF === 0) return; // no group's adapter targets this projection
    const { x, inStride, y, outStride, outOffset } = view;
    const offsets = this.offsetsOf(groups);
    this.addon.loraApply(
      x,
      inStride,
      y,
      outStride,
      outOffset,
      groups.tokens,
      offsets,
      as,
      bts,
      ranks,
      scales,
      inF,
      outF,
      this.numThreads,
    );
  }

  private halfOf(proj: LoraProjection, rank: number): HalfProjection {
    const hit = this.halves.get(proj);
    if (hit !== undefined) return hit;
    const outF = proj.b.length / rank;
    const bt = new Float32Array(proj.b.length);
    for (let o = 0; o < outF; o++) {
      for (let k = 0; k < rank; k++) bt[k * outF + o] = proj.b[o * rank + k]!;
    }
    const half = { a: new Uint16Array(proj.a.length), bt: new Uint16Array(bt.length) };
    this.addon.loraToHalf(proj.a, half.a);
    this.addon.loraToHalf(bt, half.bt);
    this.halves.set(proj, half);
    return half;
  }

  /** groups.offsets as an Int32Array, converted once per step's groups. */
  private offsetsOf(groups: LoraGroups): Int32Array {
    if (this.lastGroups !== groups) {
      this.lastGroups = groups;
      this.lastOffsets = Int32Array.from(groups.offsets);
    }
    return this.lastOffsets;
  }
}
