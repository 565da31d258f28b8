import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { STORIES_DIR } from "@kiln/test-support";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeTmpDir } from "../tests/helpers";
import { loadConfig } from "./config";
import { type QuantizeCheckpointOptions, writeQuantizedCheckpoint } from "./quantize-checkpoint";
import {
  AWQ_PACK_ORDER,
  dequantizeLinear,
  parseQuantizationConfig,
  type QuantizationConfig,
} from "./quantized";
import { loadModelShard } from "./shard-loader";
import { loadModel } from "./weights";

// GPTQ and AWQ checkpoints (issue 20): the config, the formats' packing conventions written
// out by hand, and checkpoints this test quantizes itself, loaded back within the
// quantization's error.

describe("parseQuantizationConfig", () => {
  it("reads GPTQ (v1 and v2) and AWQ", () => {
    expect(parseQuantizationConfig(null)).toBeNull();
    expect(
      parseQuantizationConfig({ quant_method: "gptq", bits: 4, group_size: 128, desc_act: true }),
    ).toEqual({ method: "gptq", bits: 4, groupSize: 128, zerosMinusOne: true });
    expect(
      parseQuantizationConfig({
        quant_method: "gptq",
        bits: 8,
        group_size: -1,
        checkpoint_format: "gptq_v2",
      }),
    ).toEqual({ method: "gptq", bits: 8, groupSize: null, zerosMinusOne: false });
    expect(
      parseQuantizationConfig({ quant_method: "awq", w_bit: 4, q_group_size: 64, version: "GEMM" }),
    ).toEqual({ method: "awq", bits: 4, groupSize: 64, zerosMinusOne: false });
  });

  it.each([
    [{ quant_method: "bitsandbytes" }, /quant_method "bitsandbytes" is not supported/],
    [{ quant_method: "gptq", bits: 3 }, /GPTQ with bits 3/],
    [{ quant_method: "gptq", checkpoint_format: "marlin" }, /checkpoint_format "marlin"/],
    [{ quant_method: "awq", bits: 4, version: "gemv" }, /AWQ version "gemv"/],
    [{ quant_method: "awq", bits: 8 }, /AWQ with bits 8/],
    [{ quant_method: "gptq", group_size: 0 }, /group_size 0/],
    [{ bits: 4 }, /quant_method/],
  ])("refuses %j naming the field", (json, message) => {
    expect(() => parseQuantizationConfig(json)).toThrow(message);
  });

  it("is part of the model's config", async () => {
    const { dir, cleanup } = await makeTmpDir();
    try {
      const raw = JSON.parse(await readFile(join(STORIES_DIR, "config.json"), "utf8"));
      raw.quantization_config = { quant_method: "fp8" };
      await writeFile(join(dir, "config.json"), JSON.stringify(raw));
      await expect(loadConfig(dir)).rejects.toThrow(/quantization_config: quant_method "fp8"/);
    } finally {
      await cleanup();
    }
  });
});

describe("dequantizeLinear: the formats' packing, written out by hand", () => {
  const gptq: QuantizationConfig = {
    method: "gptq",
    bits: 4,
    groupSize: null,
    zerosMinusOne: true,
  };

  it("GPTQ: codes along the inputs, low nibble first; v1 zeros are stored minus one", () => {
    // K = 8 inputs, N = 8 outputs: the code of (k, n) is (k + 3n) mod 16; every stored zero is
    // 7 (0x77777777, AutoGPTQ's symmetric 4-bit zero of 8); output n's scale is n + 0.5.
    const qweight = new Int32Array(8);
    for (let n = 0; n < 8; n++) {
      for (let k = 0; k < 8; k++) qweight[n]! |= ((k + 3 * n) % 16) << (4 * k);
    }
    const t = {
      qweight,
      qzeros: Int32Array.of(0x77777777),
      scales: Float32Array.from({ length: 8 }, (_, n) => n + 0.5),
      gIdx: null,
    };
    const w = dequantizeLinear("l", gptq, t, 8, 8); // [N, K]
    for (let n = 0; n < 8; n++) {
      for (let k = 0; k < 8; k++) {
        expect(w[n * 8 + k]).toBe((n + 0.5) * (((k + 3 * n) % 16) - 8));
      }
    }
    // gptq_v2 stores the zero itself.
    const v2 = dequantizeLinear("l", { ...gptq, zerosMinusOne: false }, t, 8, 8);
    expect(v2[0]).toBe(0.5 * (0 - 7));
  });

  it("GPTQ: g_idx picks each input's group (act order)", () => {
    const q = { ...gptq, groupSize: 4 };
    const t = {
      qweight: Int32Array.of(0x11111111), // every code 1, K = 8, N = 1
      // N = 1 < 8 codes per word cannot pack: use N = 8 below instead.
      qzeros: Int32Array.of(0),
      scales: Float32Array.of(1, 10),
      gIdx: Int32Array.of(1, 0, 1, 0, 1, 0, 1, 0),
    };
    expect(() => dequantizeLinear("l", q, t, 8, 1)).toThrow(/cannot be GPTQ/);
    const wide = {
      qweight: new Int32Array(8).fill(0x11111111),
      qzeros: Int32Array.of(0x00000000, 0x11111111), // stored zeros: group 0 → 0, group 1 → 1
      scales: Float32Array.from({ length: 16 }, (_, i) => (i < 8 ? 1 : 10)),
      gIdx: Int32Array.of(1, 0, 1, 0, 1, 0, 1, 0),
    };
    const w = dequantizeLinear("l", q, wide, 8, 8);
    // Group 0: zero 0 + 1 = 1, code 1 → 0. Group 1: zero 1 + 1 = 2, scale 10 → −10.
    expect([...w.subarray(0, 8)]).toEqual([-10, 0, -10, 0, -10, 0, -10, 0]);
    const bad = { ...wide, gIdx: Int32Array.of(0, 0, 0, 0, 0, 0, 0, 2) };
    expect(() => dequantizeLinear("layer.x", q, bad, 8, 8)).toThrow(/layer.x.g_idx\[7\] = 2/);
  });

  it("AWQ: codes along the outputs in the order 0, 2, 4, 6, 1, 3, 5, 7", () => {
    const awq: QuantizationConfig = {
      method: "awq",
      bits: 4,
      groupSize: null,
      zerosMinusOne: false,
    };
    // One input, eight outputs: nibble i holds code i, so output column AWQ_PACK_ORDER[i] gets i.
    const t = {
      qweight: Int32Array.of(0x76543210),
      qzeros: Int32Array.of(0),
      scales: new Float32Array(8).fill(1),
      gIdx: null,
    };
    const w = dequantizeLinear("l", awq, t, 1, 8);
    expect([...w]).toEqual([0, 4, 1, 5, 2, 6, 3, 7]);
    expect(AWQ_PACK_ORDER.map((column) => w[column])).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    // A zero of 3 in column 1 (nibble 4) only.
    const zeros = { ...t, qzeros: Int32Array.of(3 << 16) };
    expect(dequantizeLinear("l", awq, zeros, 1, 8)[1]).toBe(4 - 3);
  });

  it("names the layer when a tensor's length does not match", () => {
    const t = {
      qweight: new Int32Array(3),
      qzeros: Int32Array.of(0),
      scales: new Float32Array(8),
      gIdx: null,
    };
    expect(() => dequantizeLinear("model.layers.0.mlp.up_proj", gptq, t, 8, 8)).toThrow(
      /model.layers.0.mlp.up_proj.qweight has 3 elements/,
    );
  });
});

describe("checkpoints quantized here, loaded back", () => {
  let tmp: { dir: string; cleanup: () => Promise<void> };
  beforeAll(async () => {
    tmp = await makeTmpDir();
  });
  afterAll(async () => {
    await tmp.cleanup();
  });

  const variants: [string, QuantizeCheckpointOptions][] = [
    ["GPTQ 4-bit, groups of 32, act order (v1)", { method: "gptq", groupSize: 32, actOrder: true }],
    [
      "GPTQ 8-bit, per channel (v2)",
      { method: "gptq", bits: 8, groupSize: null, checkpointFormat: "gptq_v2" },
    ],
    ["GPTQ 2-bit, groups of 16", { method: "gptq", bits: 2, groupSize: 16 }],
    ["AWQ 4-bit, groups of 32", { method: "awq", groupSize: 32 }],
  ];

  it.each(variants)("%s: every weight within a step of the original", async (label, opts) => {
    const dir = join(tmp.dir, label.replace(/\W+/g, "-"));
    const written = await writeQuantizedCheckpoint(STORIES_DIR, dir, opts);
    // stories260K's MLP has 172 channels: 4-bit words (8 codes) cannot pack them, 8-bit (4) can.
    expect(written.quantized).toContain("model.layers.0.self_attn.q_proj");
    expect(written.quantized).toContain("model.layers.4.self_attn.o_proj");
    const mlp = ["gate_proj", "up_proj", "down_proj"].map((p) => `model.layers.3.mlp.${p}`);
    for (const layer of mlp) {
      expect(opts.bits === 8 ? written.quantized : written.dense).toContain(layer);
    }
    const header = JSON.parse(await readFile(join(dir, "config.json"), "utf8"));
    expect(header.quantization_config.quant_method).toBe(opts.method);

    const original = await loadModel(STORIES_DIR);
    const loaded = await loadModel(dir);
    expect(loaded.config.quantization?.method).toBe(opts.method);
    const bits = opts.bits ?? 4;
    const bad: string[] = [];
    for (const prefix of written.quantized) {
      const name = `${prefix}.weight`;
      const want = original.weights.get(name)!;
      const got = loaded.weights.get(name)!;
      expect(got.shape).toEqual(want.shape);
      expect(got.data).not.toEqual(want.data); // really quantized
      const [n, k] = want.shape as [number, number];
      for (let row = 0; row < n; row++) {
        // Every group's range lies within the row's range (0 included): its step is at most
        // range / (2^bits − 2). Rounding is within half a step, and the zero's own rounding can
        // clip the group's extreme value by up to another half (as in AutoGPTQ): one step.
        // A misread code is off by a good part of the range.
        let lo = 0;
        let hi = 0;
        for (let col = 0; col < k; col++) {
          lo = Math.min(lo, want.data[row * k + col]!);
          hi = Math.max(hi, want.data[row * k + col]!);
        }
        const bound = ((hi - lo) / (2 ** bits - 2)) * 1.001 + 1e-6;
        for (let col = 0; col < k; col++) {
          const err = Math.abs(got.data[row * k + col]! - want.data[row * k + col]!);
          if (err > bound) bad.push(`${name}[${row}, ${col}] off by ${err} > ${bound}`);
        }
      }
    }
    expect(bad.slice(0, 5)).toEqual([]);
    // Dense layers and the other tensors load as they were.
    for (const name of ["model.embed_tokens.weight", "model.norm.weight"]) {
      expect(loaded.weights.get(name)!.data).toEqual(original.weights.get(name)!.data);
    }
  });

  it("a tensor-parallel rank holds its region of the dequantized weights", async () => {
    const dir = join(tmp.dir, "gptq-for-shards");
    await writeQuantizedCheckpoint(STORIES_DIR, dir, { method: "gptq", groupSize: 32 });
    const full = await loadModel(dir);
    const { weights } = await loadModelShard(dir, 1, 2);
    const hd = full.config.headDim;
    const dim = full.config.hiddenSize;
    const q = full.weights.get("model.layers.2.self_attn.q_proj.weight")!;
    const qShard = weights.get("model.layers.2.self_attn.q_proj.weight")!;
    expect(qShard.shape).toEqual([4 * hd, dim]);
    expect(qShard.data).toEqual(q.data.subarray(4 * hd * dim, 8 * hd * dim));
    const o = full.weights.get("model.layers.2.self_attn.o_proj.weight")!;
    const oShard = weights.get("model.layers.2.self_attn.o_proj.weight")!;
    for (const row of [0, 17, dim - 1]) {
      const want = o.data.subarray(row * 8 * hd + 4 * hd, row * 8 * hd + 8 * hd);
      expect(oShard.data.subarray(row * 4 * hd, (row + 1) * 4 * hd)).toEqual(want);
    }
  });

  it("refuses a quantized layer missing one of its tensors, naming it", async () => {
    const dir = join(tmp.dir, "awq-for-damage");
    await writeQuantizedCheckpoint(STORIES_DIR, dir, { method: "awq", groupSize: 32 });
    const path = join(dir, "model.safetensors");
    const bytes = await readFile(path);
    const headerLen = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + headerLen).toString());
    // Rename the tensor in the header (same length) so the layer has no qzeros.
    const renamed = JSON.stringify(header).replace(
      '"model.layers.2.self_attn.o_proj.qzeros"',
      '"model.layers.2.self_attn.o_proj.xzeros"',
    );
    await writeFile(
      path,
      Buffer.concat([bytes.subarray(0, 8), Buffer.from(renamed), bytes.subarray(8 + headerLen)]),
    );
    await expect(loadModel(dir)).rejects.toThrow(
      /model.layers.2.self_attn.o_proj is AWQ-quantized but lacks its qweight, qzeros or scales/,
    );
  });
});
