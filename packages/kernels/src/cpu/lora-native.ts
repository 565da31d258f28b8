import type { LoraAdapter, LoraTarget } from "@kiln/model";
import type { LoraGroups, LoraOutputView } from "./lora-slots";
import type { NativeAddon } from "./native-addon";

const NO_MATRIX = new Float32Array(0);

/**
 * LoraSlotTable's native path: one `loraApply` call (native/lora.cc, SGMV/BGMV) per projection
 * with every group of the step, on the gemm's OpenMP team. The kernel reads B transposed
 * ([rank, outF], so the expand runs along contiguous output columns); `prepare` makes that copy
 * once per adapter, when it enters a slot, and it lives as long as the adapter's B does.
 */
export class NativeLoraKernel {
  /** Bᵀ [rank, outF] of each adapter projection's B [outF, rank]. */
  private readonly transposedB = new WeakMap<Float32Array, Float32Array>();
  private lastGroups: LoraGroups | null = null;
  private lastOffsets = new Int32Array(1);

  constructor(
    private readonly addon: NativeAddon,
    private readonly numThreads: number,
  ) {}

  /** Makes the Bᵀ copies of every projection of `adapter` (idempotent). */
  prepare(adapter: LoraAdapter): void {
    for (const layer of adapter.layers) {
      for (const proj of Object.values(layer)) {
        if (proj === undefined || this.transposedB.has(proj.b)) continue;
        const rank = adapter.rank;
        const outF = proj.b.length / rank;
        const bt = new Float32Array(proj.b.length);
        for (let o = 0; o < outF; o++) {
          for (let k = 0; k < rank; k++) bt[k * outF + o] = proj.b[o * rank + k]!;
        }
        this.transposedB.set(proj.b, bt);
      }
    }
  }

  /** `adapters[g]` is the adapter of group g (every one prepared). Same contract as apply. */
  apply(
    groups: LoraGroups,
    adapters: readonly LoraAdapter[],
    layer: number,
    target: LoraTarget,
    view: LoraOutputView,
  ): void {
    const numGroups = groups.slots.length;
    const as: Float32Array[] = [];
    const bts: Float32Array[] = [];
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
      let bt = this.transposedB.get(proj.b);
      if (bt === undefined) {
        this.prepare(adapter);
        bt = this.transposedB.get(proj.b)!;
      }
      as.push(proj.a);
      bts.push(bt);
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

  /** groups.offsets as an Int32Array, converted once per step's groups. */
  private offsetsOf(groups: LoraGroups): Int32Array {
    if (this.lastGroups !== groups) {
      this.lastGroups = groups;
      this.lastOffsets = Int32Array.from(groups.offsets);
    }
    return this.lastOffsets;
  }
}
