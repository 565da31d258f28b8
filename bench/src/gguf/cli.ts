/**
 * `npm run export-gguf -- <hf-model-dir> <out.gguf>`: writes an F32 GGUF for llama.cpp.
 */
import { exportLlamaToGguf } from "./export-llama";

async function main(): Promise<void> {
  const [dir, out] = process.argv.slice(2);
  if (!dir || !out) {
    console.error("usage: export-gguf <hf-model-dir> <out.gguf>");
    process.exit(2);
  }
  const started = performance.now();
  const result = await exportLlamaToGguf(dir, out);
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  const mib = (result.numBytes / 2 ** 20).toFixed(1);
  console.log(
    `wrote ${result.path}: ${result.numTensors} tensors, ${mib} MiB, vocab scores from ${result.vocabSource} (${seconds} s)`,
  );
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
