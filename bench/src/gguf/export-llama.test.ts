import { describe, expect, it } from "vitest";
import { ggufTensorName, interleaveRopeRows } from "./export-llama";
import { encodeGgufHeader, encodeTensorData } from "./gguf-writer";

describe("interleaveRopeRows", () => {
  it("turns each head's [x0 x1 x2 | y0 y1 y2] rows into [x0 y0 x1 y1 x2 y2]", () => {
    // 2 heads × headDim 6, 1 column: row value = its HF index.
    const w = Float32Array.from({ length: 12 }, (_, i) => i);
    expect([...interleaveRopeRows(w, 2, 1)]).toEqual([0, 3, 1, 4, 2, 5, 6, 9, 7, 10, 8, 11]);
  });

  it("moves whole rows", () => {
    const w = Float32Array.from([10, 11, 20, 21, 30, 31, 40, 41]); // 4 rows × 2 cols, 1 head
    expect([...interleaveRopeRows(w, 1, 2)]).toEqual([10, 11, 30, 31, 20, 21, 40, 41]);
  });

  it("rejects heads of odd size", () => {
    expect(() => interleaveRopeRows(new Float32Array(6), 2, 1)).toThrow(/even size/);
  });
});

describe("ggufTensorName", () => {
  it("maps HF names to llama.cpp's", () => {
    expect(ggufTensorName("model.embed_tokens.weight")).toBe("token_embd.weight");
    expect(ggufTensorName("model.layers.3.self_attn.o_proj.weight")).toBe(
      "blk.3.attn_output.weight",
    );
    expect(ggufTensorName("model.layers.0.mlp.down_proj.weight")).toBe("blk.0.ffn_down.weight");
    expect(ggufTensorName("lm_head.weight")).toBe("output.weight");
    expect(() => ggufTensorName("model.layers.0.self_attn.rotary_emb.inv_freq")).toThrow();
  });
});

describe("encodeGgufHeader", () => {
  it("writes magic, version, counts, reversed dims and aligned offsets", () => {
    const header = encodeGgufHeader(new Map([["a", { kind: "u32", value: 7 }]]), [
      { name: "t0", shape: [3, 5] },
      { name: "t1", shape: [2] },
    ]);
    const view = new DataView(header.buffer, header.byteOffset, header.byteLength);
    expect(new TextDecoder().decode(header.subarray(0, 4))).toBe("GGUF");
    expect(view.getUint32(4, true)).toBe(3);
    expect(view.getBigUint64(8, true)).toBe(2n);
    expect(view.getBigUint64(16, true)).toBe(1n);
    // kv: key len 1 "a", type 4 (u32), value 7
    expect(view.getBigUint64(24, true)).toBe(1n);
    expect(view.getUint32(33, true)).toBe(4);
    expect(view.getUint32(37, true)).toBe(7);
    // t0: name len 2 "t0", n_dims 2, ne = [5, 3], type 0, offset 0
    let at = 41 + 8 + 2;
    expect(view.getUint32(at, true)).toBe(2);
    expect(view.getBigUint64(at + 4, true)).toBe(5n);
    expect(view.getBigUint64(at + 12, true)).toBe(3n);
    expect(view.getUint32(at + 20, true)).toBe(0);
    expect(view.getBigUint64(at + 24, true)).toBe(0n);
    // t1 starts at 15 floats = 60 bytes, aligned up to 64.
    at += 32 + 8 + 2 + 4 + 8 + 4;
    expect(view.getBigUint64(at, true)).toBe(64n);
    expect(header.length % 32).toBe(0);
  });
});

describe("encodeTensorData", () => {
  const halfToNumber = (h: number) => {
    const sign = h & 0x8000 ? -1 : 1;
    const e = (h >> 10) & 0x1f;
    const m = h & 0x3ff;
    return e === 0 ? sign * m * 2 ** -24 : sign * (1 + m / 1024) * 2 ** (e - 15);
  };

  it("Q8_0: per block of 32 an f16 scale max|x|/127 and round(x / d), halves away from zero", () => {
    const data = new Float32Array(64);
    for (let i = 0; i < 32; i++) data[i] = (i - 16) / 8; // max |x| = 2
    data[40] = -0.5; // the second block: d = 0.5/127
    const bytes = encodeTensorData(data, "q8_0");
    expect(bytes.length).toBe(2 * 34);
    const view = new DataView(bytes.buffer);
    const d0 = halfToNumber(view.getUint16(0, true));
    expect(d0).toBeCloseTo(2 / 127, 4);
    for (let i = 0; i < 32; i++) {
      expect(view.getInt8(2 + i)).toBe(
        Math.round(Math.abs(data[i]! * (127 / 2))) * Math.sign(data[i]!),
      );
      expect(Math.abs(view.getInt8(2 + i) * d0 - data[i]!)).toBeLessThan(d0);
    }
    expect(view.getInt8(34 + 2 + 8)).toBe(-127);
    expect(view.getInt8(34 + 2 + 9)).toBe(0);
    expect(() => encodeTensorData(new Float32Array(40), "q8_0")).toThrow(/multiple of 32/);
  });

  it("F16 and BF16: two bytes a value, rounded to nearest", () => {
    const data = new Float32Array([1, -2.5, 65504, 1 / 3]);
    const f16 = new DataView(encodeTensorData(data, "f16").buffer);
    expect([0, 1, 2, 3].map((i) => halfToNumber(f16.getUint16(2 * i, true)))).toEqual([
      1,
      -2.5,
      65504,
      halfToNumber(0x3555),
    ]);
    const bf16 = new DataView(encodeTensorData(data, "bf16").buffer);
    expect(bf16.getUint16(0, true)).toBe(0x3f80);
    expect(bf16.getUint16(2, true)).toBe(0xc020);
  });
});
