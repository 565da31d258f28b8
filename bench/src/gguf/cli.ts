/**
 * `npm run export-gguf -- <hf-model-dir> <out.gguf> [--type f32|f16|bf16|q8_0]`: writes a GGUF
 * for llama.cpp (matrices of the given type, F32 by default).
 */
import { parseArgs } from "node:util";
import { exportLlamaToGguf } from "./export-llama";
import { parseGgmlType } from "./gguf-writer";

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { type: { type: "string" } },
  });
  const [dir, out] = positionals;
  if (!dir || !out) {
    console.error("usage: export-gguf <hf-model-dir> <out.gguf> [--type f32|f16|bf16|q8_0]");
    process.exit(2);
  }
  const started = performance.now();
  const tensorType = parseGgmlType(values.type ?? "f32");
  const result = await exportLlamaToGguf(dir, out, { tensorType });
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  const mib = (result.numBytes / 2 ** 20).toFixed(1);
  console.log(
    `wrote ${result.path}: ${result.numTensors} tensors (${tensorType}), ${mib} MiB, vocab scores from ${result.vocabSource} (${seconds} s)`,
  );
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
