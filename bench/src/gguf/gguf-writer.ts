import { type FileHandle, open } from "node:fs/promises";
import { f32ToBf16Bits, f32ToF16Bits } from "@kiln/kernels";

/**
 * A streaming writer for GGUF v3, the llama.cpp model file:
 *
 *   "GGUF" u32 version=3, u64 tensor_count, u64 kv_count,
 *   kv_count × (string key, u32 value_type, value),
 *   tensor_count × (string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset),
 *   zero padding to `ALIGNMENT`, then the tensor data, each tensor starting at a multiple of
 *   `ALIGNMENT` from the start of the data section.
 *
 * Strings are u64 length + UTF-8 bytes; everything is little-endian. `ne[0]` is the fastest
 * varying dimension, so a row-major [rows, cols] matrix is written with ne = [cols, rows].
 *
 * Tensor types (GgmlType): F32; F16 and BF16 (each value rounded to nearest, ties to even);
 * Q8_0 (blocks of 32 values along a row: an f16 scale d = max|x| / 127, then 32 int8
 * round(x / d), 34 bytes a block), as llama.cpp's reference quantizer writes them.
 */

/** GGUF's default `general.alignment`; we never write another. */
export const ALIGNMENT = 32;

const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
const GGUF_VERSION = 3;

/** The tensor types this writer encodes, with their ggml_type codes. */
export type GgmlType = "f32" | "f16" | "bf16" | "q8_0";
const GGML_TYPE_ID: Record<GgmlType, number> = { f32: 0, f16: 1, q8_0: 8, bf16: 30 };

/** A GgmlType from a flag's text; throws naming the choices. */
export function parseGgmlType(text: string): GgmlType {
  if (text in GGML_TYPE_ID) return text as GgmlType;
  throw new Error(`GGUF type "${text}": expected one of ${Object.keys(GGML_TYPE_ID).join(", ")}`);
}
const Q8_0_BLOCK = 32;
const Q8_0_BLOCK_BYTES = 2 + Q8_0_BLOCK;

/** gguf_type codes for metadata values. */
const ValueType = { UINT32: 4, INT32: 5, FLOAT32: 6, BOOL: 7, STRING: 8, ARRAY: 9 } as const;

/** A metadata value. Arrays are homogeneous; each kind names its element type. */
export type GgufValue =
  | { readonly kind: "u32"; readonly value: number }
  | { readonly kind: "f32"; readonly value: number }
  | { readonly kind: "bool"; readonly value: boolean }
  | { readonly kind: "string"; readonly value: string }
  | { readonly kind: "string[]"; readonly value: readonly string[] }
  | { readonly kind: "f32[]"; readonly value: ArrayLike<number> }
  | { readonly kind: "i32[]"; readonly value: ArrayLike<number> };

/** A tensor to write. `shape` is row-major (HF order); the writer reverses it. */
export interface GgufTensorSpec {
  readonly name: string;
  readonly shape: readonly number[];
  /** Stored type (default f32). Q8_0 needs rows (the last dimension) in multiples of 32. */
  readonly type?: GgmlType;
  /** Called once, in order, when the tensor's bytes are due; must return `product(shape)` floats. */
  readonly load: () => Promise<Float32Array>;
}

/** Growable little-endian byte buffer for the header. */
class ByteSink {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  len = 0;

  private reserve(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.len + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  u32(v: number): void {
    this.reserve(4);
    this.view.setUint32(this.len, v, true);
    this.len += 4;
  }
  i32(v: number): void {
    this.reserve(4);
    this.view.setInt32(this.len, v, true);
    this.len += 4;
  }
  u64(v: number): void {
    this.reserve(8);
    this.view.setBigUint64(this.len, BigInt(v), true);
    this.len += 8;
  }
  f32(v: number): void {
    this.reserve(4);
    this.view.setFloat32(this.len, v, true);
    this.len += 4;
  }
  u8(v: number): void {
    this.reserve(1);
    this.buf[this.len++] = v;
  }
  string(s: string): void {
    const bytes = new TextEncoder().encode(s);
    this.u64(bytes.length);
    this.reserve(bytes.length);
    this.buf.set(bytes, this.len);
    this.len += bytes.length;
  }
  padTo(alignment: number): void {
    while (this.len % alignment !== 0) this.u8(0);
  }
  bytes(): Uint8Array {
    return this.buf.subarray(0, this.len);
  }
}

function writeValue(sink: ByteSink, v: GgufValue): void {
  switch (v.kind) {
    case "u32":
      sink.u32(ValueType.UINT32);
      sink.u32(v.value);
      return;
    case "f32":
      sink.u32(ValueType.FLOAT32);
      sink.f32(v.value);
      return;
    case "bool":
      sink.u32(ValueType.BOOL);
      sink.u8(v.value ? 1 : 0);
      return;
    case "string":
      sink.u32(ValueType.STRING);
      sink.string(v.value);
      return;
    case "string[]":
      sink.u32(ValueType.ARRAY);
      sink.u32(ValueType.STRING);
      sink.u64(v.value.length);
      for (const s of v.value) sink.string(s);
      return;
    case "f32[]":
    case "i32[]": {
      const isFloat = v.kind === "f32[]";
      sink.u32(ValueType.ARRAY);
      sink.u32(isFloat ? ValueType.FLOAT32 : ValueType.INT32);
      sink.u64(v.value.length);
      for (let i = 0; i < v.value.length; i++) {
        if (isFloat) sink.f32(v.value[i]!);
        else sink.i32(v.value[i]!);
      }
      return;
    }
  }
}

const alignUp = (n: number) => Math.ceil(n / ALIGNMENT) * ALIGNMENT;
const numElements = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** Bytes a tensor of `numValues` values takes stored as `type`. */
export function ggmlTypeBytes(type: GgmlType, numValues: number): number {
  if (type === "f32") return 4 * numValues;
  if (type === "q8_0") return (numValues / Q8_0_BLOCK) * Q8_0_BLOCK_BYTES;
  return 2 * numValues;
}

/** `data` as the bytes of a `type` tensor (little-endian). */
export function encodeTensorData(data: Float32Array, type: GgmlType): Uint8Array {
  if (type === "f32") return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const out = new Uint8Array(ggmlTypeBytes(type, data.length));
  const view = new DataView(out.buffer);
  if (type === "f16" || type === "bf16") {
    const convert = type === "f16" ? f32ToF16Bits : f32ToBf16Bits;
    for (let i = 0; i < data.length; i++) view.setUint16(2 * i, convert(data[i]!), true);
    return out;
  }
  if (data.length % Q8_0_BLOCK !== 0) {
    throw new Error(`Q8_0 needs a multiple of ${Q8_0_BLOCK} values, got ${data.length}`);
  }
  for (let b = 0; b < data.length / Q8_0_BLOCK; b++) {
    const start = b * Q8_0_BLOCK;
    let maxAbs = 0;
    for (let i = 0; i < Q8_0_BLOCK; i++) maxAbs = Math.max(maxAbs, Math.abs(data[start + i]!));
    const d = Math.fround(maxAbs / 127);
    const inv = d === 0 ? 0 : Math.fround(1 / d);
    const at = b * Q8_0_BLOCK_BYTES;
    view.setUint16(at, f32ToF16Bits(d), true);
    for (let i = 0; i < Q8_0_BLOCK; i++) {
      const x = Math.fround(data[start + i]! * inv);
      // C's roundf: halves away from zero.
      view.setInt8(at + 2 + i, Math.sign(x) * Math.round(Math.abs(x)));
    }
  }
  return out;
}

/** The header bytes (through the padding before the data section) for these tensors. */
export function encodeGgufHeader(
  metadata: ReadonlyMap<string, GgufValue>,
  tensors: readonly Omit<GgufTensorSpec, "load">[],
): Uint8Array {
  const sink = new ByteSink();
  sink.u32(GGUF_MAGIC);
  sink.u32(GGUF_VERSION);
  sink.u64(tensors.length);
  sink.u64(metadata.size);
  for (const [key, value] of metadata) {
    sink.string(key);
    writeValue(sink, value);
  }
  let offset = 0;
  for (const t of tensors) {
    sink.string(t.name);
    sink.u32(t.shape.length);
    for (const dim of [...t.shape].reverse()) sink.u64(dim);
    const type = t.type ?? "f32";
    if (type === "q8_0" && t.shape.at(-1)! % Q8_0_BLOCK !== 0) {
      throw new Error(`tensor ${t.name}: Q8_0 rows must be multiples of ${Q8_0_BLOCK} values`);
    }
    sink.u32(GGML_TYPE_ID[type]);
    sink.u64(offset);
    offset = alignUp(offset + ggmlTypeBytes(type, numElements(t.shape)));
  }
  sink.padTo(ALIGNMENT);
  return sink.bytes();
}

async function writeAll(handle: FileHandle, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, done, bytes.length - done);
    done += bytesWritten;
  }
}

/**
 * Writes a GGUF file at `path` (overwriting it), loading one tensor at a time so peak memory
 * is the largest tensor. Throws when a tensor's `load` returns the wrong number of floats.
 * Returns the file size in bytes.
 */
export async function writeGguf(
  path: string,
  metadata: ReadonlyMap<string, GgufValue>,
  tensors: readonly GgufTensorSpec[],
): Promise<number> {
  const handle = await open(path, "w");
  try {
    const header = encodeGgufHeader(metadata, tensors);
    await writeAll(handle, header);
    let dataLen = 0;
    for (const t of tensors) {
      const data = await t.load();
      const expected = numElements(t.shape);
      if (data.length !== expected) {
        throw new Error(`tensor ${t.name}: got ${data.length} floats, shape needs ${expected}`);
      }
      // Float32Array is host-endian; every platform node-llama-cpp ships for is little-endian.
      const bytes = encodeTensorData(data, t.type ?? "f32");
      await writeAll(handle, bytes);
      dataLen += bytes.byteLength;
      const pad = alignUp(dataLen) - dataLen;
      if (pad > 0) await writeAll(handle, new Uint8Array(pad));
      dataLen += pad;
    }
    return header.length + dataLen;
  } finally {
    await handle.close();
  }
}
