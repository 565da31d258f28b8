// Writes a random-weight Llama checkpoint at a named shape, for benchmarks.
//   tsx bench/src/make-model.ts <shape> <outDir> [--seed N] [--tokenizer DIR]
//   npm run make-model -- llama-110m bench/models/llama-110m
import { stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { isShapeName, SHAPES, writeRandomModel } from "@kiln/model";

const USAGE = `usage: make-model <${Object.keys(SHAPES).join("|")}> <outDir> [--seed N] [--tokenizer DIR]`;

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { seed: { type: "string", default: "0" }, tokenizer: { type: "string" } },
  });
  const [shapeName, outArg] = positionals;
  const seed = Number(values.seed);
  if (shapeName === undefined || outArg === undefined || positionals.length > 2) {
    throw new Error(USAGE);
  }
  if (!isShapeName(shapeName)) throw new Error(`unknown shape ${shapeName}\n${USAGE}`);
  if (!Number.isInteger(seed)) throw new Error(`--seed must be an integer, got ${values.seed}`);
  // `npm run -w` runs in the workspace directory; paths are meant relative to where the
  // user typed the command, which npm passes as INIT_CWD.
  const base = process.env["INIT_CWD"] ?? process.cwd();
  const outDir = resolve(base, outArg);
  const tokenizerDir = values.tokenizer === undefined ? undefined : resolve(base, values.tokenizer);
  const startMs = performance.now();
  await writeRandomModel(outDir, shapeName, { seed, tokenizerDir });
  const { size } = await stat(join(outDir, "model.safetensors"));
  const seconds = ((performance.now() - startMs) / 1000).toFixed(1);
  console.log(
    `${shapeName} (seed ${seed}) → ${outDir}: ${(size / 1e9).toFixed(2)} GB in ${seconds}s`,
  );
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
