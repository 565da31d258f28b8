import { execFile } from "node:child_process";
import { open } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { expect, it } from "vitest";
import { headerFor, makeTmpDir } from "./helpers";

const NUM_TENSORS = 4;
const TENSOR_ELEMS = 64 << 20; // 256 MiB of f32 each, 1 GiB in all
const CHUNK_ELEMS = 4 << 20; // 16 MiB write buffer, reused

/** Writes the file chunk by chunk; chunk k of every tensor holds the value k. */
async function writeLargeCheckpoint(path: string): Promise<void> {
  const specs = Array.from({ length: NUM_TENSORS }, (_, i) => ({
    name: `t${i}`,
    dtype: "F32",
    shape: [TENSOR_ELEMS / 1024, 1024],
    bytes: { length: TENSOR_ELEMS * 4 },
  }));
  const json = Buffer.from(JSON.stringify(headerFor(specs)));
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(json.length));
  const handle = await open(path, "w");
  try {
    await handle.write(Buffer.concat([prefix, json]));
    const chunk = new Float32Array(CHUNK_ELEMS); // [CHUNK_ELEMS] f32
    for (let t = 0; t < NUM_TENSORS; t++) {
      for (let k = 0; k < TENSOR_ELEMS / CHUNK_ELEMS; k++) {
        chunk.fill(k);
        await handle.write(new Uint8Array(chunk.buffer));
      }
    }
  } finally {
    await handle.close();
  }
}

it("loads a 1 GiB f32 checkpoint with peak RSS under 2.5 GB", async () => {
  const { dir, cleanup } = await makeTmpDir();
  try {
    await writeLargeCheckpoint(join(dir, "model.safetensors"));
    const script = join(import.meta.dirname, "fixtures/load-report-rss.ts");
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ["--import", "tsx", script, dir],
      {
        cwd: import.meta.dirname,
      },
    );
    const report = JSON.parse(stdout) as { maxRssBytes: number; samples: Record<string, number[]> };
    const lastChunk = TENSOR_ELEMS / CHUNK_ELEMS - 1;
    const midChunk = TENSOR_ELEMS / 2 / CHUNK_ELEMS;
    for (let t = 0; t < NUM_TENSORS; t++) {
      expect(report.samples[`t${t}`]).toEqual([0, midChunk, lastChunk]);
    }
    expect(report.maxRssBytes).toBeGreaterThan(1 << 30);
    expect(report.maxRssBytes).toBeLessThan(2.5e9);
    console.log(`1 GiB load: peak RSS ${(report.maxRssBytes / 1e9).toFixed(2)} GB`);
  } finally {
    await cleanup();
  }
}, 120_000);
