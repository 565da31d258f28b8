import type { LoraAdapter, LoraTarget } from "@kiln/model";
import { mulberry32, requireAvailable } from "@kiln/test-support";
import { describe, expect, it } from "vitest";
import { createGemm } from "../src/cpu/gemm";
import { type LoraGroups, LoraSlotTable } from "../src/cpu/lora-slots";
import {
  LORA_PLAN_FIELDS,
  type NativeAddon,
  type NativeLoraBank,
  tryLoadNativeAddon,
} from "../src/cpu/native-addon";
import { randomArray, tinyConfig } from "./helpers/random-model";

// The batched LoRA kernels (ADR 0015) against float64: the TypeScript reference always, the
// addon's SGMV/BGMV kernel (native/lora.cc) when it is built (CI=true requires it), which reads
// A and B as half floats: its expected values use the half-rounded weights. Each adapted token
// row gets exactly its own slot's delta; every other element of y is untouched.

const addon = tryLoadNativeAddon();
requireAvailable(
  "the native LoRA kernel (kiln_gemm addon)",
  addon !== null && typeof addon.LoraBank === "function",
  "build it: npm run build -w @kiln/kernels",
);
const config = tinyConfig({ numLayers: 1 });
const gemm = createGemm({ numThreads: 2 });

/** x rounded to the nearest IEEE half float (Veltkamp split to 11 significant bits). */
function halfRound(x: number): number {
  if (Math.abs(x) < 2 ** -14) return Math.round(x * 2 ** 24) / 2 ** 24; // half subnormals
  const c = x * (2 ** 42 + 1);
  return c - (c - x);
}

type Kernel = {
  name: string;
  label: string;
  table: (maxLoras: number) => LoraSlotTable;
  /** How the kernel stores a weight. */
  weight: (w: number) => number;
};
const kernels: Kernel[] = [
  {
    name: "typescript",
    label: "typescript",
    table: (n) => new LoraSlotTable(config, n, gemm, null),
    weight: (w) => w,
  },
];
if (addon !== null) {
  kernels.push({
    name: "native",
    label: "native",
    table: (n) => new LoraSlotTable(config, n, gemm, { addon, numThreads: 2 }),
    weight: halfRound,
  });
  // The integer half-widening path that machines without AVX-512 run (native/lora.cc).
  const portable: NativeAddon = {
    ...addon,
    LoraBank: function PortableBank(numSlots: number): NativeLoraBank {
      const bank = new addon.LoraBank(numSlots);
      return {
        setSlot: (slot, halves) => bank.setSlot(slot, halves),
        clearSlot: (slot) => bank.clearSlot(slot),
        apply: (x, inStride, y, outStride, tokens, offsets, plan, numThreads) =>
          bank.apply(x, inStride, y, outStride, tokens, offsets, plan, numThreads, true),
      };
    } as unknown as NativeAddon["LoraBank"],
  };
  kernels.push({
    name: "native",
    label: "native (portable widening)",
    table: (n) => new LoraSlotTable(config, n, gemm, { addon: portable, numThreads: 2 }),
    weight: halfRound,
  });
}

function randomAdapter(
  rand: () => number,
  rank: number,
  inF: number,
  outF: number,
  targets: LoraTarget[],
): LoraAdapter {
  const layer: Partial<Record<LoraTarget, { a: Float32Array; b: Float32Array }>> = {};
  for (const t of targets) {
    layer[t] = { a: randomArray(rank * inF, rand, 0.5), b: randomArray(outF * rank, rand, 0.5) };
  }
  return { rank, scale: 16 / rank, layers: [layer] };
}

/** Groups tokens by slot as the runner does, from each token's slot (-1: base). */
function groupsOf(table: LoraSlotTable, tokenSlots: number[]): LoraGroups {
  const groups = table.group(
    Int32Array.from(tokenSlots),
    new Int32Array(tokenSlots.length).fill(1),
  );
  if (groups === null) throw new Error("no adapted token");
  return groups;
}

interface Shape {
  readonly inF: number;
  readonly outF: number;
  /** Ranks of the slots' adapters (80 exceeds the kernel's 64-rank chunk). */
  readonly ranks: number[];
  /** Slot of each token (-1: base model). */
  readonly tokenSlots: number[];
}

const shapes: Shape[] = [
  // Decode with one token per adapter (BGMV), 16 lanes exactly.
  { inF: 64, outF: 32, ranks: [8, 8, 8, 8], tokenSlots: [0, 1, -1, 2, 3] },
  // Prefill-sized groups (several 8-token tiles), ragged widths, mixed and large ranks.
  { inF: 771, outF: 37, ranks: [16, 3, 80], tokenSlots: [2, ...Array(19).fill(0), -1, 1, 1, 2] },
  { inF: 5, outF: 130, ranks: [1, 64], tokenSlots: [1, 0, 1, 0, 1, 1, 1, 1, 1, 1, 1, 0] },
  // Prefill-sized (over native/lora.cc's kMinParallelMacs, 4 M): tiles shared by the team.
  {
    inF: 771,
    outF: 523,
    ranks: [64, 80],
    tokenSlots: [...Array(60).fill(0), ...Array(40).fill(1)],
  },
];

describe.each(kernels)("$label batched LoRA", (k) => {
  it.each(shapes)("adds each token's own adapter delta (inF $inF, outF $outF)", (shape) => {
    const rand = mulberry32(shape.inF * 31 + shape.outF);
    const { inF, outF, ranks, tokenSlots } = shape;
    const table = k.table(ranks.length);
    expect(table.kernel).toBe(k.name);
    const adapters = ranks.map((r) => randomAdapter(rand, r, inF, outF, ["q_proj"]));
    adapters.forEach((a, slot) => {
      table.load(slot, a);
    });
    const numTokens = tokenSlots.length;
    const inStride = inF + 3;
    const outStride = outF + 7;
    const outOffset = 5;
    const x = randomArray(numTokens * inStride, rand, 2);
    const y0 = randomArray(numTokens * outStride, rand, 1);
    const y = y0.slice();
    table.apply(groupsOf(table, tokenSlots), 0, [{ target: "q_proj", outOffset }], {
      x,
      inStride,
      y,
      outStride,
    });
    const bad: string[] = [];
    for (let t = 0; t < numTokens; t++) {
      const slot = tokenSlots[t]!;
      const adapter = slot < 0 ? null : adapters[slot]!;
      // float64 shrink of token t: low[r] and Σ|terms| of each.
      const low: number[] = [];
      const lowAbs: number[] = [];
      if (adapter !== null) {
        const { a } = adapter.layers[0]!.q_proj!;
        for (let r = 0; r < adapter.rank; r++) {
          let sum = 0;
          let sumAbs = 0;
          for (let f = 0; f < inF; f++) {
            const term = x[t * inStride + f]! * k.weight(a[r * inF + f]!);
            sum += term;
            sumAbs += Math.abs(term);
          }
          low.push(sum * adapter.scale);
          lowAbs.push(sumAbs * adapter.scale);
        }
      }
      for (let c = 0; c < outStride; c++) {
        const i = t * outStride + c;
        const o = c - outOffset;
        if (adapter === null || o < 0 || o >= outF) {
          if (y[i] !== y0[i]) bad.push(`y[${t}, ${c}] changed`); // untouched
          continue;
        }
        const { b } = adapter.layers[0]!.q_proj!;
        let want = y0[i]!;
        let sumAbs = Math.abs(want);
        for (let r = 0; r < adapter.rank; r++) {
          const bw = k.weight(b[o * adapter.rank + r]!);
          want += low[r]! * bw;
          sumAbs += Math.abs(lowAbs[r]! * bw);
        }
        if (!(Math.abs(y[i]! - want) <= 2e-6 * sumAbs))
          bad.push(`y[${t}, ${c}] = ${y[i]}, want ${want}`);
      }
    }
    expect(bad.slice(0, 5)).toEqual([]);
  });

  it("a slot loaded with another adapter between steps gets the new adapter's delta", () => {
    // The native kernel reuses a call's arguments while the groups name the same adapters.
    const rand = mulberry32(11);
    const table = k.table(2);
    const first = randomAdapter(rand, 4, 16, 16, ["q_proj"]);
    const second = randomAdapter(rand, 4, 16, 16, ["q_proj"]);
    table.load(0, first);
    table.load(1, first);
    const x = randomArray(2 * 16, rand, 1);
    const run = (t: LoraSlotTable): Float32Array => {
      const y = new Float32Array(2 * 16);
      t.apply(groupsOf(t, [0, 1]), 0, [{ target: "q_proj", outOffset: 0 }], {
        x,
        inStride: 16,
        y,
        outStride: 16,
      });
      return y;
    };
    const before = run(table);
    table.load(1, second);
    const fresh = k.table(2);
    fresh.load(0, first);
    fresh.load(1, second);
    const after = run(table);
    expect(after).toEqual(run(fresh));
    expect(after.subarray(16)).not.toEqual(before.subarray(16));
    expect(after.subarray(0, 16)).toEqual(before.subarray(0, 16));
  });

  it("a stage of several targets adds what each target adds alone", () => {
    // q/k/v share x and one fused output row: one call, each target at its column offset.
    const rand = mulberry32(13);
    const qkv: LoraTarget[] = ["q_proj", "k_proj", "v_proj"];
    const stage = qkv.map((target, i) => ({ target, outOffset: 1 + 16 * i }));
    const adapters = [
      randomAdapter(rand, 4, 16, 16, ["q_proj", "v_proj"]),
      randomAdapter(rand, 8, 16, 16, ["k_proj"]),
      randomAdapter(rand, 16, 16, 16, qkv),
    ];
    const fused = k.table(3);
    const alone = k.table(3);
    adapters.forEach((a, slot) => {
      fused.load(slot, a);
      alone.load(slot, a);
    });
    const tokenSlots = [0, 1, -1, 2, 2, 0];
    const x = randomArray(tokenSlots.length * 16, rand, 1);
    const y0 = randomArray(tokenSlots.length * 50, rand, 1);
    const yFused = y0.slice();
    const yAlone = y0.slice();
    const view = { x, inStride: 16, outStride: 50 };
    fused.apply(groupsOf(fused, tokenSlots), 0, stage, { ...view, y: yFused });
    for (const t of stage) alone.apply(groupsOf(alone, tokenSlots), 0, [t], { ...view, y: yAlone });
    expect(yFused).toEqual(yAlone);
    // Token 2 is the base model's; every adapted token's row changed.
    expect(yFused.subarray(100, 150)).toEqual(y0.subarray(100, 150));
    for (const t of [0, 1, 3, 4, 5]) {
      expect(yFused.subarray(t * 50, (t + 1) * 50)).not.toEqual(y0.subarray(t * 50, (t + 1) * 50));
    }
  });

  it("skips groups whose adapter does not target the projection", () => {
    const rand = mulberry32(7);
    const table = k.table(2);
    table.load(0, randomAdapter(rand, 4, 16, 16, ["v_proj"]));
    table.load(1, randomAdapter(rand, 4, 16, 16, ["q_proj"]));
    const x = randomArray(3 * 16, rand, 1);
    const y = randomArray(3 * 16, rand, 1);
    const view = { x, inStride: 16, y, outStride: 16 };
    const before = y.slice();
    table.apply(groupsOf(table, [0, 0, 1]), 0, [{ target: "q_proj", outOffset: 0 }], view);
    expect(y.subarray(0, 32)).toEqual(before.subarray(0, 32));
    expect(y.subarray(32)).not.toEqual(before.subarray(32));
  });
});

describe.runIf(addon !== null)("native LoraBank arguments", () => {
  /** A bank whose slot 0 holds A (4 × 8 zeros) then Bᵀ (4 × 8 ones) and whose slot 1 is empty. */
  function bank(): NativeLoraBank {
    const b = new addon!.LoraBank(2);
    const halves = new Uint16Array(64);
    halves.fill(0x3c00, 32); // 1.0
    b.setSlot(0, halves);
    return b;
  }
  // [group, slot, aOffset, btOffset, rank, inF, outF, outOffset, scale]
  const row = [0, 0, 0, 32, 4, 8, 8, 0, 1];

  it("throws RangeError for a bad row, slot or matrix, writing nothing", () => {
    const b = bank();
    const x = new Float32Array(2 * 8).fill(1);
    const y = new Float32Array(2 * 8);
    const call = (tokens: number[], plan: number[]) =>
      b.apply(
        x,
        8,
        y,
        8,
        Int32Array.from(tokens),
        Int32Array.from([0, tokens.length]),
        Float64Array.from(plan),
        1,
      );
    expect(() => call([0, 2], row)).toThrow(RangeError); // token 2 outside x
    expect(() => call([-1], row)).toThrow(RangeError);
    expect(() => call([0], [0, 1, ...row.slice(2)])).toThrow(/empty slot/);
    expect(() => call([0], [0, 0, 0, 40, ...row.slice(4)])).toThrow(/outside its slot/);
    expect(() => call([0], [1, ...row.slice(1)])).toThrow(/group outside/);
    expect(() => call([0], [...row.slice(0, 7), 4, 1])).toThrow(/stride/); // outOffset 4 + 8 > 8
    expect(() => call([0], row.slice(1))).toThrow(/whole rows/);
    expect(row.length).toBe(LORA_PLAN_FIELDS);
    expect(y).toEqual(new Float32Array(16));
    expect(() => b.setSlot(2, new Uint16Array(1))).toThrow(RangeError);
    // A Float32Array where half floats are expected is refused, not reinterpreted.
    expect(() => b.setSlot(0, new Float32Array(64) as never)).toThrow(TypeError);
    b.clearSlot(0);
    expect(() => call([0], row)).toThrow(/empty slot/);
  });

  it("loraToHalf rounds to the nearest half float", () => {
    const src = Float32Array.from([1, -2.5, 65504, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 2 ** -24, 1e-9]);
    const dst = new Uint16Array(src.length);
    addon!.loraToHalf(src, dst);
    // 1 + 2^-11 ties to 1 (even), 1 + 3·2^-11 ties up to 1 + 2^-9; 1e-9 underflows to 0.
    expect([...dst]).toEqual([0x3c00, 0xc100, 0x7bff, 0x3c00, 0x3c02, 0x0001, 0x0000]);
  });

  it.each([false, true])("widens every half float exactly (portableOnly %s)", (portableOnly) => {
    // rank 16, inF 16: x = e_i and A's rows hold 16 half patterns each, so low[k] = A[k, i];
    // B = I (outF 16) copies low into y. Every finite bit pattern, subnormals included, must
    // come back as its exact value.
    const half = (bits: number): number => {
      const sign = bits & 0x8000 ? -1 : 1;
      const exp = (bits >> 10) & 0x1f;
      const man = bits & 0x3ff;
      if (exp === 0) return sign * man * 2 ** -24;
      return sign * (1 + man / 1024) * 2 ** (exp - 15);
    };
    const bt = new Uint16Array(16 * 16);
    for (let k = 0; k < 16; k++) bt[k * 16 + k] = 0x3c00;
    const x = new Float32Array(16);
    const y = new Float32Array(16);
    const halves = new Uint16Array(2 * 16 * 16);
    const a = halves.subarray(0, 256);
    halves.set(bt, 256);
    const b = new addon!.LoraBank(1);
    b.setSlot(0, halves);
    const bad: string[] = [];
    for (let base = 0; base < 0x10000; base += 256) {
      for (let j = 0; j < 256; j++) a[j] = base + j; // A[k, i] = base + 16k + i
      for (let i = 0; i < 16; i++) {
        x.fill(0);
        x[i] = 1;
        y.fill(0);
        const plan = Float64Array.of(0, 0, 0, 256, 16, 16, 16, 0, 1);
        b.apply(x, 16, y, 16, Int32Array.of(0), Int32Array.of(0, 1), plan, 1, portableOnly);
        for (let k = 0; k < 16; k++) {
          const bits = base + 16 * k + i;
          if ((bits & 0x7c00) === 0x7c00) continue; // ±inf and NaN: B's zeros make them NaN
          if (y[k] === half(bits)) continue;
          bad.push(`0x${bits.toString(16)}: ${y[k]} want ${half(bits)}`);
        }
      }
    }
    expect(bad.slice(0, 5)).toEqual([]);
  });
});
