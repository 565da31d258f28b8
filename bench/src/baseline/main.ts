/**
 * The llama.cpp baseline server: `tsx src/baseline/main.ts --model <dir|file.gguf>
 * [--sequences 16] [--threads 2] [--context-size 1024] [--port 0] [--api-key KEY]
 * [--batching lockstep|next-cycle] [--gguf-type f32|f16|bf16|q8_0]` (see step-barrier.ts for
 * why lockstep is the default). An HF directory is exported to a GGUF of that type first (F32
 * by default; cached by `ensureGguf`). Prints
 * `{"event":"listening","port":N}` on stdout once it accepts requests, like Kiln's services.
 */
import { rename, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { exportLlamaToGguf } from "../gguf/export-llama";
import { type GgmlType, parseGgmlType } from "../gguf/gguf-writer";
import { loadLlamaCpp } from "./load-llama";
import { createBaselineServer } from "./openai-server";
import { SequencePool } from "./sequence-pool";
import { StepBarrier } from "./step-barrier";

/**
 * The GGUF for `model`: the file itself, or `<tmpdir>/kiln-<name>-<mtime>.<type>.gguf`
 * exported from the HF directory unless that file already exists.
 */
export async function ensureGguf(model: string, type: GgmlType = "f32"): Promise<string> {
  const info = await stat(model);
  if (info.isFile()) return model;
  const weights = await stat(join(model, "model.safetensors")).catch(() =>
    stat(join(model, "config.json")),
  );
  const out = join(
    tmpdir(),
    `kiln-${basename(resolve(model))}-${Math.floor(weights.mtimeMs)}.${type}.gguf`,
  );
  if (
    await stat(out).then(
      () => true,
      () => false,
    )
  )
    return out;
  const partial = `${out}.partial-${process.pid}`;
  await exportLlamaToGguf(model, partial, { tensorType: type });
  await rename(partial, out);
  return out;
}

function positiveInt(value: string | undefined, fallback: number, flag: string): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${flag}: expected a positive integer`);
  return n;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: "string" },
      "model-name": { type: "string" },
      sequences: { type: "string" },
      threads: { type: "string" },
      "context-size": { type: "string" },
      host: { type: "string" },
      port: { type: "string" },
      "api-key": { type: "string" },
      batching: { type: "string" },
      "gguf-type": { type: "string" },
    },
  });
  if (!values.model) throw new Error("--model <hf-dir | file.gguf> is required");
  const numSequences = positiveInt(values.sequences, 16, "--sequences");
  const numThreads = positiveInt(values.threads, 2, "--threads");
  const contextSize = positiveInt(values["context-size"], 1024, "--context-size");
  const modelPath = await ensureGguf(values.model, parseGgmlType(values["gguf-type"] ?? "f32"));
  const llama = await loadLlamaCpp();
  const model = await llama.loadModel({ modelPath });
  const batching = values.batching ?? "lockstep";
  if (batching !== "lockstep" && batching !== "next-cycle") {
    throw new Error("--batching: lockstep (one decode for all active sequences) or next-cycle");
  }
  // contextSize is per sequence: node-llama-cpp allocates contextSize × sequences KV cells.
  const context = await model.createContext({
    sequences: numSequences,
    contextSize,
    threads: { ideal: numThreads, min: numThreads },
  });
  const server = createBaselineServer({
    model,
    pool: new SequencePool(context),
    barrier: batching === "lockstep" ? new StepBarrier() : null,
    modelName: values["model-name"] ?? basename(resolve(values.model)).replace(/\.gguf$/, ""),
    apiKey: values["api-key"] ?? process.env.KILN_API_KEY ?? null,
  });
  server.keepAliveTimeout = 60_000;
  const host = values.host ?? "127.0.0.1";
  await new Promise<void>((ok) => server.listen(Number(values.port ?? 0), host, ok));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  console.log(
    JSON.stringify({ event: "listening", port, modelPath, numSequences, numThreads, batching }),
  );
  const shutdown = () => {
    server.close();
    server.closeAllConnections();
    void context.dispose().then(() => process.exit(0));
  };
  process.once("SIGTERM", shutdown);
  process.once("SIGINT", shutdown);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : err);
  process.exit(1);
});
