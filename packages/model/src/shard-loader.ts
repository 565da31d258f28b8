import type { FileHandle } from "node:fs/promises";
import { open } from "node:fs/promises";
import { join } from "node:path";
import { loadConfig } from "./config";
import { ModelError } from "./errors";
import { f16BitsToF32 } from "./half";
import { readExactly, readSafetensorsHeader, type SafetensorsEntry } from "./safetensors";
import {
  planTensorShard,
  regionShape,
  shardRegion,
  type TensorRegion,
  type TensorShardPlan,
} from "./tensor-parallel";
import type { Tensor, WeightMap } from "./types";
import { expectedWeightShapes, loadModel } from "./weights";

/** Reads whole rows in pieces of at most this many bytes. */
const MAX_READ_BYTES = 64 * 1024 * 1024;

/** One rank's shard: its plan (with the per-rank config) and exactly the tensors it holds. */
export interface LoadedShard {
  readonly plan: TensorShardPlan;
  readonly weights: WeightMap;
}

function halfToF32(bits: Uint16Array, out: Float32Array, outOff: number, isBf16: boolean): void {
  const outBits = new Uint32Array(out.buffer, out.byteOffset, out.length);
  if (isBf16) {
    for (let i = 0; i < bits.length; i++) outBits[outOff + i] = bits[i]! << 16;
    return;
  }
  for (let i = 0; i < bits.length; i++) out[outOff + i] = f16BitsToF32(bits[i]!);
}

/**
 * Reads only `region` of a stored tensor (byte ranges: whole-row regions in large pieces,
 * column regions row by row), converting F16/BF16 to f32. Never reads the rest of the tensor.
 */
export async function readTensorRegion(
  handle: FileHandle,
  entry: SafetensorsEntry,
  region: TensorRegion,
  path: string,
): Promise<Float32Array> {
  const elemBytes =
    entry.dtype === "F32" ? 4 : entry.dtype === "F16" || entry.dtype === "BF16" ? 2 : 0;
  if (elemBytes === 0) {
    throw new ModelError(
      "INVALID_CHECKPOINT",
      `${path}: tensor ${entry.name}: dtype ${entry.dtype}`,
    );
  }
  const numCols = entry.shape[1] ?? 1;
  const out = new Float32Array(region.numRows * region.numCols); // [numRows, numCols]
  const isWholeRows = region.numCols === numCols;
  const rowsPerRead = isWholeRows
    ? Math.max(1, Math.floor(MAX_READ_BYTES / (numCols * elemBytes)))
    : 1;
  for (let r = 0; r < region.numRows; r += rowsPerRead) {
    const numReadRows = Math.min(rowsPerRead, region.numRows - r);
    const numElems = numReadRows * region.numCols;
    const position = entry.begin + ((region.rowStart + r) * numCols + region.colStart) * elemBytes;
    const outOff = r * region.numCols;
    if (elemBytes === 4) {
      const dst = new Uint8Array(out.buffer, outOff * 4, numElems * 4);
      await readExactly(handle, dst, position, path);
    } else {
      const bits = new Uint16Array(numElems);
      await readExactly(handle, new Uint8Array(bits.buffer), position, path);
      halfToF32(bits, out, outOff, entry.dtype === "BF16");
    }
  }
  return out;
}

function checkShape(name: string, actual: readonly number[], expected: readonly number[]): void {
  const isSame = actual.length === expected.length && actual.every((d, i) => d === expected[i]);
  if (!isSame) {
    throw new ModelError(
      "INVALID_CHECKPOINT",
      `tensor ${name} has shape [${actual.join(", ")}], config.json implies [${expected.join(", ")}]`,
    );
  }
}

/**
 * Loads rank `rank` of `size` of a single-file checkpoint (`model.safetensors`): config.json,
 * the shard plan (ModelError INVALID_CONFIG when the heads cannot be split) and only the byte
 * ranges of the tensors this rank holds, with their per-rank shapes.
 */
export async function loadModelShard(
  dir: string,
  rank: number,
  size: number,
): Promise<LoadedShard> {
  const full = await loadConfig(dir);
  const plan = planTensorShard(full, rank, size);
  const expected = expectedWeightShapes(full);
  if (full.quantization) return { plan, weights: await dequantizedShard(dir, plan, expected) };
  const path = join(dir, "model.safetensors");
  const handle = await open(path, "r").catch((err: unknown) => {
    throw new ModelError("NOT_FOUND", `tensor parallelism needs ${path}`, { cause: err });
  });
  const weights = new Map<string, Tensor>();
  try {
    const { size: fileLen } = await handle.stat();
    const { entries } = await readSafetensorsHeader(handle, fileLen, path);
    for (const entry of entries) {
      const shape = expected.get(entry.name);
      if (shape === undefined) continue;
      checkShape(entry.name, entry.shape, shape);
      const region = shardRegion(plan, entry.name, shape);
      if (region === null) continue;
      const data = await readTensorRegion(handle, entry, region, path);
      weights.set(entry.name, { name: entry.name, shape: regionShape(region, shape), data });
    }
  } finally {
    await handle.close();
  }
  for (const [name, shape] of expected) {
    if (name === "lm_head.weight" && !plan.hasLmHead) continue;
    if (!weights.has(name)) {
      throw new ModelError("INVALID_CHECKPOINT", `missing tensor ${name} [${shape.join(", ")}]`);
    }
  }
  return { plan, weights };
}

/**
 * A GPTQ/AWQ checkpoint's shard: the whole model is loaded and dequantized (its packed codes
 * run along the dimension a shard would cut), then each tensor's region is copied out.
 */
async function dequantizedShard(
  dir: string,
  plan: TensorShardPlan,
  expected: ReadonlyMap<string, readonly number[]>,
): Promise<WeightMap> {
  const { weights: all } = await loadModel(dir);
  const weights = new Map<string, Tensor>();
  for (const [name, shape] of expected) {
    const region = shardRegion(plan, name, shape);
    const tensor = all.get(name);
    if (region === null || tensor === undefined) continue;
    const numCols = shape[1] ?? 1;
    const data = new Float32Array(region.numRows * region.numCols);
    for (let r = 0; r < region.numRows; r++) {
      const from = (region.rowStart + r) * numCols + region.colStart;
      data.set(tensor.data.subarray(from, from + region.numCols), r * region.numCols);
    }
    weights.set(name, { name, shape: regionShape(region, shape), data });
  }
  return weights;
}
