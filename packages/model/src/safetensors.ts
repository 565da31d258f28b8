import type { FileHandle } from "node:fs/promises";
import { ModelError } from "./errors";
import { f16BitsToF32 } from "./half";

/**
 * Reading the safetensors format: an 8-byte little-endian u64 header length, a JSON header
 * `{ name: { dtype, shape, data_offsets: [begin, end] }, __metadata__?: {...} }`, then the
 * data region that `data_offsets` index into (relative to the end of the header).
 */

/** Bytes per element of every dtype the format defines; used to check offsets. */
const DTYPE_BYTES: Readonly<Record<string, number>> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
  U16: 2,
  I16: 2,
  F16: 2,
  BF16: 2,
  U32: 4,
  I32: 4,
  F32: 4,
  U64: 8,
  I64: 8,
  F64: 8,
};

/** Dtypes Kiln converts to f32 on load. */
export type ConvertibleDtype = "F32" | "F16" | "BF16";

/** The safetensors reference implementation refuses headers above 100 MB. */
const MAX_HEADER_LEN = 100_000_000;

/** One tensor's location; offsets are absolute file positions. */
export interface SafetensorsEntry {
  readonly name: string;
  readonly dtype: string;
  readonly shape: readonly number[];
  readonly begin: number;
  readonly end: number;
}

/** A parsed and fully validated header: every entry lies inside the file, none overlap. */
export interface SafetensorsHeader {
  readonly entries: readonly SafetensorsEntry[];
  /** File position of the first data byte (8 + header length). */
  readonly dataStart: number;
}

function bad(path: string, message: string): ModelError {
  return new ModelError("INVALID_CHECKPOINT", `${path}: ${message}`);
}

/** Fills `dst` from `position`, looping over short reads; EOF is an error, never zeros. */
export async function readExactly(
  handle: FileHandle,
  dst: Uint8Array,
  position: number,
  path: string,
): Promise<void> {
  let numRead = 0;
  while (numRead < dst.length) {
    const { bytesRead } = await handle.read(dst, numRead, dst.length - numRead, position + numRead);
    if (bytesRead === 0) {
      throw bad(path, `unexpected end of file at byte ${position + numRead} (file truncated)`);
    }
    numRead += bytesRead;
  }
}

/** Reads and validates the header of an open safetensors file of `fileLen` bytes. */
export async function readSafetensorsHeader(
  handle: FileHandle,
  fileLen: number,
  path: string,
): Promise<SafetensorsHeader> {
  if (fileLen < 8) throw bad(path, `file is ${fileLen} bytes, too short for a safetensors header`);
  const lenBytes = new Uint8Array(8);
  await readExactly(handle, lenBytes, 0, path);
  const headerLen64 = new DataView(lenBytes.buffer).getBigUint64(0, true);
  if (headerLen64 > BigInt(fileLen - 8)) {
    throw bad(
      path,
      `header length ${headerLen64} runs past the end of the file (${fileLen} bytes)`,
    );
  }
  const headerLen = Number(headerLen64);
  if (headerLen > MAX_HEADER_LEN) throw bad(path, `header length ${headerLen} exceeds 100 MB`);
  const headerBytes = new Uint8Array(headerLen); // [headerLen] u8, JSON text
  await readExactly(handle, headerBytes, 8, path);
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(headerBytes));
  } catch (err) {
    throw bad(path, `header is not valid JSON: ${(err as Error).message}`);
  }
  const dataStart = 8 + headerLen;
  return { entries: parseHeaderJson(json, fileLen - dataStart, dataStart, path), dataStart };
}

function isIntArray(value: unknown, len?: number): value is number[] {
  return (
    Array.isArray(value) &&
    (len === undefined || value.length === len) &&
    value.every((v) => Number.isSafeInteger(v) && v >= 0)
  );
}

function parseEntry(name: string, raw: unknown, dataLen: number, path: string) {
  if (typeof raw !== "object" || raw === null) throw bad(path, `tensor ${name}: not an object`);
  const { dtype, shape, data_offsets: offsets } = raw as Record<string, unknown>;
  if (typeof dtype !== "string") throw bad(path, `tensor ${name}: dtype missing`);
  const elemBytes = DTYPE_BYTES[dtype];
  if (elemBytes === undefined) throw bad(path, `tensor ${name}: unknown dtype ${dtype}`);
  if (!isIntArray(shape)) throw bad(path, `tensor ${name}: shape must be a list of integers >= 0`);
  if (!isIntArray(offsets, 2)) {
    throw bad(path, `tensor ${name}: data_offsets must be two integers >= 0`);
  }
  const [begin, end] = offsets as [number, number];
  if (begin > end) throw bad(path, `tensor ${name}: data_offsets [${begin}, ${end}] are reversed`);
  if (end > dataLen) {
    throw bad(
      path,
      `tensor ${name}: data_offsets [${begin}, ${end}] run past the data region ` +
        `(${dataLen} bytes): file truncated or header corrupt`,
    );
  }
  const numElems = shape.reduce((a, b) => a * b, 1);
  if (end - begin !== numElems * elemBytes) {
    throw bad(
      path,
      `tensor ${name}: data_offsets span ${end - begin} bytes but shape [${shape.join(", ")}] ` +
        `of ${dtype} needs ${numElems * elemBytes}`,
    );
  }
  return { dtype, shape, begin, end };
}

/**
 * Validates a header object against a data region of `dataLen` bytes starting at file
 * position `dataStart`. Exported for tests; loaders use `readSafetensorsHeader`.
 */
export function parseHeaderJson(
  json: unknown,
  dataLen: number,
  dataStart: number,
  path: string,
): SafetensorsEntry[] {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw bad(path, "header is not a JSON object");
  }
  const entries: SafetensorsEntry[] = [];
  for (const [name, raw] of Object.entries(json)) {
    if (name === "__metadata__") continue;
    const e = parseEntry(name, raw, dataLen, path);
    entries.push({ ...e, name, begin: dataStart + e.begin, end: dataStart + e.end });
  }
  const byBegin = entries.filter((e) => e.end > e.begin).sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < byBegin.length; i++) {
    const prev = byBegin[i - 1]!;
    const cur = byBegin[i]!;
    if (cur.begin < prev.end) throw bad(path, `tensors ${prev.name} and ${cur.name} overlap`);
  }
  return entries;
}

/** Chunk for F16/BF16 conversion: bounds the extra memory per load to 8 MiB. */
const CONVERT_CHUNK_BYTES = 8 << 20;
/** Node refuses single reads above 2 GiB; f32 tensors are read in 1 GiB slices. */
const MAX_READ_BYTES = 1 << 30;

let f16Table: Float32Array | null = null;

/** All 65536 half-precision values as f32 (256 KiB, built on first use). */
function getF16Table(): Float32Array {
  if (f16Table !== null) return f16Table;
  const table = new Float32Array(65536); // [65536] f32, indexed by the f16 bit pattern
  for (let h = 0; h < 65536; h++) table[h] = f16BitsToF32(h);
  f16Table = table;
  return table;
}

/**
 * Reads one tensor into a fresh Float32Array, converting F16/BF16. The file is never held
 * twice: f32 bytes land directly in the result; half types pass through one bounded chunk.
 * Assumes a little-endian host, as safetensors data is little-endian.
 */
export async function readTensorData(
  handle: FileHandle,
  entry: SafetensorsEntry,
  path: string,
): Promise<Float32Array> {
  const numElems = entry.shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(numElems); // [product of shape] f32, row-major
  if (entry.dtype === "F32") {
    const bytes = new Uint8Array(out.buffer);
    for (let off = 0; off < bytes.length; off += MAX_READ_BYTES) {
      const slice = bytes.subarray(off, Math.min(bytes.length, off + MAX_READ_BYTES));
      await readExactly(handle, slice, entry.begin + off, path);
    }
    return out;
  }
  if (entry.dtype !== "F16" && entry.dtype !== "BF16") {
    throw bad(path, `tensor ${entry.name}: dtype ${entry.dtype} is not supported (F32, F16, BF16)`);
  }
  const chunkElems = Math.min(numElems, CONVERT_CHUNK_BYTES / 2);
  const chunk = new Uint16Array(chunkElems); // [chunkElems] raw f16/bf16 bits
  const chunkBytes = new Uint8Array(chunk.buffer);
  const outBits = new Uint32Array(out.buffer);
  const table = entry.dtype === "F16" ? getF16Table() : null;
  for (let start = 0; start < numElems; start += chunkElems) {
    const n = Math.min(chunkElems, numElems - start);
    await readExactly(handle, chunkBytes.subarray(0, n * 2), entry.begin + start * 2, path);
    if (table !== null) {
      for (let i = 0; i < n; i++) out[start + i] = table[chunk[i]!]!;
    } else {
      // bf16 is the top half of an f32: shifting the bits is exact.
      for (let i = 0; i < n; i++) outBits[start + i] = chunk[i]! << 16;
    }
  }
  return out;
}

/** Reads one I32 tensor (GPTQ/AWQ packed codes and group indices) into a fresh Int32Array. */
export async function readInt32TensorData(
  handle: FileHandle,
  entry: SafetensorsEntry,
  path: string,
): Promise<Int32Array> {
  if (entry.dtype !== "I32") {
    throw bad(path, `tensor ${entry.name}: dtype ${entry.dtype}, expected I32`);
  }
  const out = new Int32Array(entry.shape.reduce((a, b) => a * b, 1));
  await readExactly(handle, new Uint8Array(out.buffer), entry.begin, path);
  return out;
}

/** A tensor as safetensorsHeaderBytes lays it out (data follows in the same order). */
export interface SafetensorsLayoutEntry {
  readonly name: string;
  readonly dtype: string;
  readonly shape: readonly number[];
  readonly byteLength: number;
}

/**
 * The header of a safetensors file whose data region holds `entries` back to back: the u64
 * length prefix and the JSON, padded so the data region is 8-byte aligned as the reference
 * writer does.
 */
export function safetensorsHeaderBytes(entries: readonly SafetensorsLayoutEntry[]): Buffer {
  const header: Record<string, unknown> = { __metadata__: { format: "pt" } };
  let offset = 0;
  for (const { name, dtype, shape, byteLength } of entries) {
    header[name] = { dtype, shape, data_offsets: [offset, offset + byteLength] };
    offset += byteLength;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - ((8 + json.length) % 8)) % 8);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([prefix, Buffer.from(json)]);
}
