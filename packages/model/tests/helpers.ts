import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface RawTensor {
  readonly name: string;
  readonly dtype: string;
  readonly shape: readonly number[];
  readonly bytes: Uint8Array;
}

/** Header object with contiguous offsets for `tensors`, in order. */
export function headerFor(
  tensors: readonly (Omit<RawTensor, "bytes"> & { bytes: { readonly length: number } })[],
): Record<string, unknown> {
  const header: Record<string, unknown> = { __metadata__: { format: "pt" } };
  let offset = 0;
  for (const t of tensors) {
    header[t.name] = {
      dtype: t.dtype,
      shape: t.shape,
      data_offsets: [offset, offset + t.bytes.length],
    };
    offset += t.bytes.length;
  }
  return header;
}

/** A safetensors file as bytes: u64 LE length, JSON header, data. */
export function safetensorsBytes(header: unknown, data: readonly Uint8Array[]): Buffer {
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, ...data]);
}

export function f32Tensor(name: string, shape: readonly number[], values: number[]): RawTensor {
  return { name, dtype: "F32", shape, bytes: new Uint8Array(new Float32Array(values).buffer) };
}

export async function writeSafetensors(path: string, tensors: readonly RawTensor[]) {
  await writeFile(
    path,
    safetensorsBytes(
      headerFor(tensors),
      tensors.map((t) => t.bytes),
    ),
  );
}

/** A fresh temporary directory and a function that deletes it. */
export async function makeTmpDir(): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), "kiln-model-"));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}
