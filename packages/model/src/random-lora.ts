import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  ADAPTER_CONFIG_FILE,
  ADAPTER_WEIGHTS_FILE,
  LORA_TARGETS,
  type LoraTarget,
  loraTargetShape,
} from "./lora";
import type { LlamaConfig } from "./types";

export interface RandomLoraOptions {
  readonly rank: number;
  readonly seed: number;
  /** lora_alpha; 2 × rank by default. */
  readonly alpha?: number;
  /** Uniform half-width of B's entries; 2 by default (large enough to change greedy output). */
  readonly bRange?: number;
  readonly targets?: readonly LoraTarget[];
}

/** A 32-bit PRNG (mulberry32) returning floats in [-1, 1). */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  };
}

/**
 * Writes a PEFT LoRA adapter for `config` with seeded random A and B (f32) to `dir`: tests and
 * benchmarks use it to make adapters that visibly change the base model's output.
 */
export async function writeRandomLoraAdapter(
  dir: string,
  config: LlamaConfig,
  opts: RandomLoraOptions,
): Promise<void> {
  const targets = opts.targets ?? LORA_TARGETS;
  const next = prng(opts.seed);
  const bRange = opts.bRange ?? 2;
  const header: Record<string, unknown> = { __metadata__: { format: "pt" } };
  const chunks: Buffer[] = [];
  let offset = 0;
  for (let l = 0; l < config.numLayers; l++) {
    for (const target of targets) {
      const [outF, inF] = loraTargetShape(config, target);
      const group =
        target.endsWith("proj") && ["gate_proj", "up_proj", "down_proj"].includes(target)
          ? "mlp"
          : "self_attn";
      for (const [which, shape, range] of [
        ["A", [opts.rank, inF], 1 / Math.sqrt(inF)],
        ["B", [outF, opts.rank], bRange],
      ] as const) {
        const data = new Float32Array(shape[0] * shape[1]);
        for (let i = 0; i < data.length; i++) data[i] = next() * range;
        const name = `base_model.model.model.layers.${l}.${group}.${target}.lora_${which}.weight`;
        header[name] = { dtype: "F32", shape, data_offsets: [offset, offset + data.byteLength] };
        offset += data.byteLength;
        chunks.push(Buffer.from(data.buffer));
      }
    }
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - ((8 + json.length) % 8)) % 8);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(json.length));
  await mkdir(dir, { recursive: true });
  const adapterConfig = {
    peft_type: "LORA",
    task_type: "CAUSAL_LM",
    r: opts.rank,
    lora_alpha: opts.alpha ?? 2 * opts.rank,
    target_modules: targets,
    bias: "none",
    use_rslora: false,
  };
  await writeFile(join(dir, ADAPTER_CONFIG_FILE), JSON.stringify(adapterConfig, null, 2));
  await writeFile(
    join(dir, ADAPTER_WEIGHTS_FILE),
    Buffer.concat([prefix, Buffer.from(json), ...chunks]),
  );
}
