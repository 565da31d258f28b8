import {
  type LlamaConfig,
  LORA_TARGETS,
  type LoraAdapter,
  type LoraTarget,
  loraTargetShape,
} from "@kiln/model";

/** One projection's adapters side by side: slot s owns rows (of A) / columns (of B) s·R..s·R+R. */
interface Stack {
  /** [maxLoras · R, inF] every slot's A, zero-padded to rank R. */
  readonly a: Float32Array;
  /** [outF, maxLoras · R] every slot's B times its scale, zero-padded. */
  readonly b: Float32Array;
}

/**
 * Every resident adapter stacked per (layer, projection), for steps whose tokens are spread over
 * many slots (decode with many adapters): instead of one tiny gemm pair per slot, one shrink
 * gemm over all slots (X · A_allᵀ), a mask keeping each token's own slot's R columns, and one
 * expand gemm (· B_allᵀ). Masked columns are exact zeros, so every token's delta equals its own
 * adapter's. Loading a slot copies only that slot's block (all blocks when the rank grows).
 */
export class StackedLora {
  /** Rank every slot is padded to (the largest loaded). */
  rank = 0;
  private stacks: Map<LoraTarget, Stack>[] = [];

  constructor(
    private readonly config: LlamaConfig,
    private readonly maxLoras: number,
  ) {}

  stack(layer: number, target: LoraTarget): Stack {
    return this.stacks[layer]!.get(target)!;
  }

  /** Writes `adapter` (or zeros, for null) into slot `slot`; `slots` is the whole table after. */
  update(slot: number, slots: readonly (LoraAdapter | null)[]): void {
    const needed = Math.max(0, ...slots.map((a) => a?.rank ?? 0));
    if (needed > this.rank || this.stacks.length === 0) {
      this.rank = needed;
      this.allocate();
      slots.forEach((a, s) => {
        this.write(s, a);
      });
      return;
    }
    this.write(slot, slots[slot] ?? null);
  }

  private allocate(): void {
    const width = this.maxLoras * this.rank;
    this.stacks = Array.from({ length: this.config.numLayers }, () => {
      const m = new Map<LoraTarget, Stack>();
      for (const target of LORA_TARGETS) {
        const [outF, inF] = loraTargetShape(this.config, target);
        m.set(target, { a: new Float32Array(width * inF), b: new Float32Array(outF * width) });
      }
      return m;
    });
  }

  private write(slot: number, adapter: LoraAdapter | null): void {
    const R = this.rank;
    const width = this.maxLoras * R;
    for (let l = 0; l < this.config.numLayers; l++) {
      for (const target of LORA_TARGETS) {
        const [outF, inF] = loraTargetShape(this.config, target);
        const { a, b } = this.stacks[l]!.get(target)!;
        a.fill(0, slot * R * inF, (slot + 1) * R * inF);
        for (let o = 0; o < outF; o++) b.fill(0, o * width + slot * R, o * width + slot * R + R);
        const proj = adapter?.layers[l]?.[target];
        if (adapter === null || proj === undefined) continue;
        const r = adapter.rank;
        a.set(proj.a, slot * R * inF);
        for (let o = 0; o < outF; o++) {
          for (let k = 0; k < r; k++)
            b[o * width + slot * R + k] = proj.b[o * r + k]! * adapter.scale;
        }
      }
    }
  }
}
