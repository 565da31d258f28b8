import type { LlamaConfig, LoraAdapter, LoraTarget } from "@kiln/model";
import type { Gemm } from "./gemm";
import { NativeLoraKernel } from "./lora-native";
import type { NativeAddon } from "./native-addon";

/**
 * Groups of at most this many tokens skip the gemm (BGMV-style row kernel): a native call per
 * tiny group costs more than the arithmetic (decode batches with many adapters).
 */
const DIRECT_MAX_TOKENS = 4;

/** y[t] += scale · (x[t] Aᵀ) Bᵀ for one token, without gathering (sums in double precision). */
function applyOne(
  t: number,
  a: Float32Array,
  b: Float32Array,
  rank: number,
  inF: number,
  outF: number,
  scale: number,
  view: LoraOutputView,
  low: Float32Array,
): void {
  const x = view.x;
  const xo = t * view.inStride;
  for (let k = 0; k < rank; k++) {
    const ao = k * inF;
    let s0 = 0;
    let s1 = 0;
    let s2 = 0;
    let s3 = 0;
    let i = 0;
    for (; i + 3 < inF; i += 4) {
      s0 += x[xo + i]! * a[ao + i]!;
      s1 += x[xo + i + 1]! * a[ao + i + 1]!;
      s2 += x[xo + i + 2]! * a[ao + i + 2]!;
      s3 += x[xo + i + 3]! * a[ao + i + 3]!;
    }
    for (; i < inF; i++) s0 += x[xo + i]! * a[ao + i]!;
    low[k] = (s0 + s1 + (s2 + s3)) * scale;
  }
  const y = view.y;
  const yo = t * view.outStride + view.outOffset;
  for (let o = 0; o < outF; o++) {
    const bo = o * rank;
    let sum = 0;
    for (let k = 0; k < rank; k++) sum += b[bo + k]! * low[k]!;
    y[yo + o]! += sum;
  }
}

/** The activations a stage of a layer reads and adds to (q/k/v share one, gate/up another). */
export interface LoraStageView {
  /** Activation rows the projections read ([numTokens, inStride]). */
  readonly x: Float32Array;
  readonly inStride: number;
  /** Activation rows the deltas are added to ([numTokens, outStride]). */
  readonly y: Float32Array;
  readonly outStride: number;
}

/** A projection of a stage, and where its output starts in a row of the stage's y. */
export interface LoraTargetOutput {
  readonly target: LoraTarget;
  readonly outOffset: number;
}

/** Where a target projection's output lives in the runner's fused activations. */
export interface LoraOutputView {
  /** Activation rows the projection reads ([numTokens, inStride]). */
  readonly x: Float32Array;
  readonly inStride: number;
  /** Activation rows the delta is added to ([numTokens, outStride]), starting at outOffset. */
  readonly y: Float32Array;
  readonly outStride: number;
  readonly outOffset: number;
}

/** Tokens of one step grouped by adapter slot (SGMV's segments). */
export interface LoraGroups {
  /** [numGroups] the slot of each group. */
  readonly slots: number[];
  /** [numGroups + 1] offsets into `tokens`. */
  readonly offsets: number[];
  /** Token indices, group after group. */
  readonly tokens: Int32Array;
}

/**
 * The worker's resident adapters: `maxLoras` slots, each empty or holding one adapter's A and B
 * matrices (f32, as loaded). `apply` is the grouped low-rank op that runs beside each
 * projection's GEMM: for every group of tokens sharing a slot it gathers their input rows, and
 * adds scale · (X Aᵀ) Bᵀ to their output rows. Weights are never merged into the base model.
 * Loading a slot only swaps references (the adapter was read beforehand; the native kernel's
 * packed half-float copy is made once per adapter), so it never stalls a step for longer than that.
 *
 * With the addon (`native`), `apply` runs native/lora.cc's SGMV/BGMV kernel on the gemm's
 * threads; without it, the TypeScript code below, which is the reference the native kernel is
 * tested against.
 */
export class LoraSlotTable {
  readonly maxLoras: number;
  private readonly slots: (LoraAdapter | null)[];
  private gathered = new Float32Array(0);
  private low = new Float32Array(0);
  private delta = new Float32Array(0);
  private readonly native: NativeLoraKernel | null;
  /** Which kernel `apply` runs. */
  readonly kernel: "native" | "typescript";

  /** `native`: the addon and its thread count (0: the team's default); null: TypeScript. */
  constructor(
    private readonly config: LlamaConfig,
    maxLoras: number,
    private readonly gemm: Gemm,
    native: { readonly addon: NativeAddon; readonly numThreads: number } | null = null,
  ) {
    if (!Number.isInteger(maxLoras) || maxLoras < 0) throw new Error(`bad maxLoras ${maxLoras}`);
    this.maxLoras = maxLoras;
    this.slots = Array.from({ length: maxLoras }, () => null);
    this.native =
      native !== null && typeof native.addon.LoraBank === "function"
        ? new NativeLoraKernel(native.addon, native.numThreads, maxLoras)
        : null;
    this.kernel = this.native !== null ? "native" : "typescript";
  }

  load(slot: number, adapter: LoraAdapter): void {
    this.checkSlot(slot);
    if (adapter.layers.length !== this.config.numLayers) {
      throw new Error(
        `LoRA adapter has ${adapter.layers.length} layers, the model ${this.config.numLayers}`,
      );
    }
    this.native?.load(slot, adapter);
    this.slots[slot] = adapter;
  }

  unload(slot: number): void {
    this.checkSlot(slot);
    this.native?.unload(slot);
    this.slots[slot] = null;
  }

  isLoaded(slot: number): boolean {
    this.checkSlot(slot);
    return this.slots[slot] !== null;
  }

  /**
   * Groups tokens by slot from per-sequence slots (-1 = base model). Throws when a sequence
   * names a slot outside the table or an empty one. Returns null when no token is adapted.
   */
  group(seqSlots: Int32Array, queryLens: Int32Array): LoraGroups | null {
    const perSlot: number[][] = Array.from({ length: this.maxLoras }, () => []);
    let token = 0;
    let any = false;
    for (let s = 0; s < queryLens.length; s++) {
      const slot = seqSlots[s]!;
      const n = queryLens[s]!;
      if (slot >= 0) {
        if (slot >= this.maxLoras || this.slots[slot] === null) {
          throw new Error(
            `invalid step input: sequence ${s} uses LoRA slot ${slot}, which holds no adapter`,
          );
        }
        for (let t = 0; t < n; t++) perSlot[slot]!.push(token + t);
        any = true;
      } else if (slot !== -1) {
        throw new Error(`invalid step input: LoRA slot ${slot}`);
      }
      token += n;
    }
    if (!any) return null;
    const slots: number[] = [];
    const offsets: number[] = [0];
    const flat: number[] = [];
    perSlot.forEach((tokens, slot) => {
      if (tokens.length === 0) return;
      slots.push(slot);
      flat.push(...tokens);
      offsets.push(flat.length);
    });
    return { slots, offsets, tokens: Int32Array.from(flat) };
  }

  /**
   * For each target of a layer's stage: y[token, outOffset..] += scale · (x[token] Aᵀ) Bᵀ for
   * every adapted token. The targets share x and y (q/k/v, or gate/up, write one fused row).
   */
  apply(
    groups: LoraGroups,
    layer: number,
    targets: readonly LoraTargetOutput[],
    view: LoraStageView,
  ): void {
    if (this.native !== null) {
      this.native.apply(groups, this.slots, layer, targets, view);
      return;
    }
    for (const { target, outOffset } of targets) {
      this.applyTypescript(groups, layer, target, { ...view, outOffset });
    }
  }

  /** The reference: a row kernel for small groups, a gathered gemm pair for larger ones. */
  applyTypescript(
    groups: LoraGroups,
    layer: number,
    target: LoraTarget,
    view: LoraOutputView,
  ): void {
    for (let g = 0; g < groups.slots.length; g++) {
      const adapter = this.slots[groups.slots[g]!]!;
      const proj = adapter.layers[layer]![target];
      if (proj === undefined) continue;
      const start = groups.offsets[g]!;
      const m = groups.offsets[g + 1]! - start;
      const rank = adapter.rank;
      const inF = proj.a.length / rank;
      const outF = proj.b.length / rank;
      if (m <= DIRECT_MAX_TOKENS) {
        for (let i = 0; i < m; i++) {
          applyOne(
            groups.tokens[start + i]!,
            proj.a,
            proj.b,
            rank,
            inF,
            outF,
            adapter.scale,
            view,
            this.ensure("low", rank),
          );
        }
        continue;
      }
      const x = this.ensure("gathered", m * inF);
      for (let i = 0; i < m; i++) {
        const t = groups.tokens[start + i]!;
        x.set(view.x.subarray(t * view.inStride, t * view.inStride + inF), i * inF);
      }
      const low = this.ensure("low", m * rank);
      this.gemm.matmulTransB(x, proj.a, low, m, rank, inF);
      for (let i = 0; i < m * rank; i++) low[i]! *= adapter.scale;
      const delta = this.ensure("delta", m * outF);
      this.gemm.matmulTransB(low, proj.b, delta, m, outF, rank);
      for (let i = 0; i < m; i++) {
        const base = groups.tokens[start + i]! * view.outStride + view.outOffset;
        const row = i * outF;
        for (let o = 0; o < outF; o++) view.y[base + o]! += delta[row + o]!;
      }
    }
  }

  private ensure(which: "gathered" | "low" | "delta", n: number): Float32Array {
    if (this[which].length < n) this[which] = new Float32Array(Math.max(n, 2 * this[which].length));
    return this[which].length === n ? this[which] : this[which].subarray(0, n);
  }

  private checkSlot(slot: number): void {
    if (!Number.isInteger(slot) || slot < 0 || slot >= this.maxLoras) {
      throw new Error(`LoRA slot ${slot} is outside 0..${this.maxLoras - 1}`);
    }
  }
}
