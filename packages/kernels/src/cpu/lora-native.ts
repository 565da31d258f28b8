import { LORA_TARGETS, type LoraAdapter, type LoraTarget } from "@kiln/model";
import type { LoraGroups, LoraStageView, LoraTargetOutput } from "./lora-slots";
import type { NativeAddon, NativeLoraBank } from "./native-addon";

/** Where one projection's matrices sit in its adapter's packed halves. */
interface PackedProjection {
  /** Offset of A, [rank, inF]. */
  readonly aOffset: number;
  /** Offset of Bᵀ, [rank, outF], so the expand runs along contiguous output columns. */
  readonly btOffset: number;
  readonly inF: number;
  readonly outF: number;
}

/** One adapter as the native kernel reads it: every A and Bᵀ as IEEE half floats, packed. */
interface PackedAdapter {
  readonly halves: Uint16Array;
  /** [layer · targets + target] its matrices; undefined where the adapter does not target it. */
  readonly projections: (PackedProjection | undefined)[];
}

/** A stage's plan for a step's adapters (null: no group's adapter targets the stage). */
interface CachedPlan {
  readonly outOffsets: readonly number[];
  readonly plan: Float64Array | null;
}

function targetIndex(target: LoraTarget): number {
  return LORA_TARGETS.indexOf(target);
}

/**
 * LoraSlotTable's native path (native/lora.cc, SGMV/BGMV): a LoraBank holds each slot's
 * adapter as one packed array of half floats (decoding many adapters is bound by the bytes of A
 * and B read per token), made once per adapter when it enters a slot and kept as long as the
 * adapter is (a WeakMap). Each stage of a layer (q/k/v, o, gate/up, down) is one call whose
 * plan, a row per (projection, group), is built once and reused while the steps' groups name
 * the same adapters in the same order, so steady decoding marshals a few typed arrays a call.
 */
export class NativeLoraKernel {
  private readonly bank: NativeLoraBank;
  private readonly packed = new WeakMap<LoraAdapter, PackedAdapter>();
  private lastGroups: LoraGroups | null = null;
  private lastOffsets = new Int32Array(1);
  /** The slot of each group, and its adapter, that `plans` were built for. */
  private planSlotIds: readonly number[] = [];
  private planSlots: readonly (LoraAdapter | null)[] = [];
  /** Keyed by layer and the stage's targets. */
  private plans = new Map<number, CachedPlan>();

  constructor(
    private readonly addon: NativeAddon,
    private readonly numThreads: number,
    maxLoras: number,
  ) {
    this.bank = new addon.LoraBank(maxLoras);
  }

  /** Slot `slot` now holds `adapter` (its packed halves are made on its first load). */
  load(slot: number, adapter: LoraAdapter): void {
    this.bank.setSlot(slot, this.packedOf(adapter).halves);
  }

  unload(slot: number): void {
    this.bank.clearSlot(slot);
  }

  /**
   * LoraSlotTable.apply's contract; `slots` is the slot table: group g's adapter is
   * `slots[groups.slots[g]]`.
   */
  apply(
    groups: LoraGroups,
    slots: readonly (LoraAdapter | null)[],
    layer: number,
    targets: readonly LoraTargetOutput[],
    view: LoraStageView,
  ): void {
    if (groups !== this.lastGroups) this.startStep(groups, slots);
    let mask = 0;
    for (const { target } of targets) mask |= 1 << targetIndex(target);
    const key = layer * (1 << LORA_TARGETS.length) + mask;
    let cached = this.plans.get(key);
    if (
      cached === undefined ||
      cached.outOffsets.length !== targets.length ||
      targets.some((t, i) => t.outOffset !== cached!.outOffsets[i])
    ) {
      cached = {
        outOffsets: targets.map((t) => t.outOffset),
        plan: this.buildPlan(groups, layer, targets),
      };
      this.plans.set(key, cached);
    }
    if (cached.plan === null) return;
    this.bank.apply(
      view.x,
      view.inStride,
      view.y,
      view.outStride,
      groups.tokens,
      this.lastOffsets,
      cached.plan,
      this.numThreads,
    );
  }

  /** A new step's groups: their offsets, and the cached plans unless the adapters changed. */
  private startStep(groups: LoraGroups, slots: readonly (LoraAdapter | null)[]): void {
    this.lastGroups = groups;
    this.lastOffsets = Int32Array.from(groups.offsets);
    const adapters = groups.slots.map((slot) => slots[slot] ?? null);
    const same =
      adapters.length === this.planSlots.length &&
      adapters.every((adapter, g) => adapter === this.planSlots[g]) &&
      groups.slots.every((slot, g) => slot === this.planSlotIds[g]);
    if (same) return;
    this.planSlotIds = [...groups.slots];
    this.planSlots = adapters;
    this.plans = new Map();
  }

  private buildPlan(
    groups: LoraGroups,
    layer: number,
    targets: readonly LoraTargetOutput[],
  ): Float64Array | null {
    const rows: number[] = [];
    for (const { target, outOffset } of targets) {
      for (let g = 0; g < groups.slots.length; g++) {
        const adapter = this.planSlots[g]!;
        const proj =
          this.packedOf(adapter).projections[layer * LORA_TARGETS.length + targetIndex(target)];
        if (proj === undefined) continue;
        rows.push(
          g,
          groups.slots[g]!,
          proj.aOffset,
          proj.btOffset,
          adapter.rank,
          proj.inF,
          proj.outF,
          outOffset,
          adapter.scale,
        );
      }
    }
    return rows.length === 0 ? null : Float64Array.from(rows);
  }

  private packedOf(adapter: LoraAdapter): PackedAdapter {
    const hit = this.packed.get(adapter);
    if (hit !== undefined) return hit;
    const rank = adapter.rank;
    const projections: (PackedProjection | undefined)[] = [];
    let length = 0;
    for (const layer of adapter.layers) {
      for (const target of LORA_TARGETS) {
        const proj = layer[target];
        if (proj === undefined) {
          projections.push(undefined);
          continue;
        }
        const inF = proj.a.length / rank;
        const outF = proj.b.length / rank;
        projections.push({ aOffset: length, btOffset: length + rank * inF, inF, outF });
        length += rank * (inF + outF);
      }
    }
    const halves = new Uint16Array(length);
    adapter.layers.forEach((layer, l) => {
      LORA_TARGETS.forEach((target, t) => {
        const proj = layer[target];
        const at = projections[l * LORA_TARGETS.length + t];
        if (proj === undefined || at === undefined) return;
        const bt = new Float32Array(proj.b.length);
        for (let o = 0; o < at.outF; o++) {
          for (let k = 0; k < rank; k++) bt[k * at.outF + o] = proj.b[o * rank + k]!;
        }
        this.addon.loraToHalf(proj.a, halves.subarray(at.aOffset, at.aOffset + proj.a.length));
        this.addon.loraToHalf(bt, halves.subarray(at.btOffset, at.btOffset + bt.length));
      });
    });
    const packed = { halves, projections };
    this.packed.set(adapter, packed);
    return packed;
  }
}
