import type { AdapterId } from "./ids";

/** Put `adapterId` into worker LoRA slot `slot` before the step runs. */
export interface LoraLoad {
  readonly slot: number;
  readonly adapterId: AdapterId;
}

/** Steps a waiting sequence may be passed over for its adapter before admission blocks for it. */
export const DEFAULT_LORA_MAX_SKIPS = 32;

/**
 * Which adapters a replica's worker holds in its `maxLoras` slots, and which a step may use
 * (ADR 0015). Pure bookkeeping, no I/O:
 * - admission: a sequence may join `running` only if its adapter is already running or fewer
 *   than `maxLoras` distinct adapters run, so no step ever needs more than `maxLoras` slots;
 * - fairness: a waiting sequence passed over `maxSkips` times blocks admission behind it until
 *   a slot frees, so it never starves against a busier adapter;
 * - residency: adapters stay in their slot after their requests finish and are evicted least
 *   recently used, never while a running sequence uses them.
 */
export class LoraSlots {
  readonly maxLoras: number;
  readonly maxSkips: number;
  private readonly slots: (AdapterId | null)[];
  private readonly lastUsed: number[];
  private clock = 0;
  /** Times each waiting sequence was passed over for its adapter. */
  private readonly skips = new WeakMap<object, number>();

  constructor(maxLoras: number, maxSkips: number = DEFAULT_LORA_MAX_SKIPS) {
    this.maxLoras = maxLoras;
    this.maxSkips = maxSkips;
    this.slots = Array.from({ length: maxLoras }, () => null);
    this.lastUsed = Array.from({ length: maxLoras }, () => -1);
  }

  /** Whether a sequence of `adapterId` may run beside sequences of `runningAdapters`. */
  canAdmit(adapterId: AdapterId | null, runningAdapters: ReadonlySet<AdapterId>): boolean {
    if (adapterId === null || runningAdapters.has(adapterId)) return true;
    return runningAdapters.size < this.maxLoras;
  }

  /**
   * Slots for the adapters of one step. Adapters already resident keep their slot; the others
   * take an empty slot or evict the least recently used adapter outside `pinned` (the adapters of
   * running sequences). Returns each adapter's slot and the loads the worker must run first.
   * Throws when `adapters` (with `pinned`) need more than maxLoras slots: admission prevents it.
   */
  assign(
    adapters: ReadonlySet<AdapterId>,
    pinned: ReadonlySet<AdapterId>,
  ): { slotOf: Map<AdapterId, number>; loads: LoraLoad[] } {
    const tick = ++this.clock;
    const slotOf = new Map<AdapterId, number>();
    const loads: LoraLoad[] = [];
    for (const adapterId of adapters) {
      let slot = this.slots.indexOf(adapterId);
      if (slot < 0) {
        slot = this.victim(adapters, pinned);
        this.slots[slot] = adapterId;
        loads.push({ slot, adapterId });
      }
      this.lastUsed[slot] = tick;
      slotOf.set(adapterId, slot);
    }
    return { slotOf, loads };
  }

  /**
   * Records that `seq` waits for a slot this step. Returns false once it has waited `maxSkips`
   * steps: then admission must stop behind it until its adapter fits (no starvation).
   */
  skip(seq: object): boolean {
    const n = (this.skips.get(seq) ?? 0) + 1;
    this.skips.set(seq, n);
    return n <= this.maxSkips;
  }

  /** `seq` was admitted: its wait starts over if it is ever preempted. */
  admitted(seq: object): void {
    this.skips.delete(seq);
  }

  /** Adapters in slots now (running or idle). */
  resident(): AdapterId[] {
    return this.slots.filter((a): a is AdapterId => a !== null);
  }

  /** Forget every slot (the worker restarted or was reset: its slots are empty). */
  reset(): void {
    this.slots.fill(null);
    this.lastUsed.fill(-1);
  }

  private victim(adapters: ReadonlySet<AdapterId>, pinned: ReadonlySet<AdapterId>): number {
    let best = -1;
    for (let s = 0; s < this.maxLoras; s++) {
      const held = this.slots[s]!;
      if (held === null) return s;
      if (adapters.has(held) || pinned.has(held)) continue;
      if (best < 0 || this.lastUsed[s]! < this.lastUsed[best]!) best = s;
    }
    if (best < 0) throw new Error(`a step needs more than ${this.maxLoras} LoRA slots`);
    return best;
  }
}
