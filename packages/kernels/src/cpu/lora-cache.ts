import { type LlamaConfig, type LoraAdapter, loadLoraAdapter } from "@kiln/model";
import type { LoraSlotLoad } from "../backend";
import type { LoraSlotTable } from "./lora-slots";

/**
 * Parsed adapters kept in host memory (KILN_MAX_CPU_LORAS), most recently used last, so an
 * adapter evicted from a slot and wanted again is not re-read from disk.
 */
export class LoraHostCache {
  private readonly entries = new Map<string, LoraAdapter>();

  constructor(
    private readonly config: LlamaConfig,
    private readonly capacity: number,
    private readonly maxRank: number,
  ) {}

  async get(path: string): Promise<LoraAdapter> {
    const hit = this.entries.get(path);
    if (hit !== undefined) {
      this.entries.delete(path);
      this.entries.set(path, hit);
      return hit;
    }
    const adapter = await loadLoraAdapter(path, this.config, this.maxRank);
    this.entries.set(path, adapter);
    while (this.entries.size > Math.max(this.capacity, 0)) {
      this.entries.delete(this.entries.keys().next().value as string);
    }
    return adapter;
  }

  /** Reads every adapter first, then swaps them into their slots (the swap is the only stall). */
  async applyLoads(loads: readonly LoraSlotLoad[], table: LoraSlotTable): Promise<void> {
    const adapters: LoraAdapter[] = [];
    for (const load of loads) adapters.push(await this.get(load.path));
    loads.forEach((load, i) => {
      table.load(load.slot, adapters[i]!);
    });
  }
}
