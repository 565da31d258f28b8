import { open, stat } from "node:fs/promises";
import { join } from "node:path";
import { readJsonFile } from "./config";
import { hasErrnoCode, ModelError } from "./errors";
import { readSafetensorsHeader, readTensorData } from "./safetensors";
import type { LlamaConfig } from "./types";

/** The projections a Kiln LoRA adapter may target, in the order kernels apply them. */
export const LORA_TARGETS = [
  "q_proj",
  "k_proj",
  "v_proj",
  "o_proj",
  "gate_proj",
  "up_proj",
  "down_proj",
] as const;
export type LoraTarget = (typeof LORA_TARGETS)[number];

/** One adapted projection: y += scale · (x Aᵀ) Bᵀ. */
export interface LoraProjection {
  /** [rank, inFeatures] f32, row-major (PEFT's lora_A.weight). */
  readonly a: Float32Array;
  /** [outFeatures, rank] f32, row-major (PEFT's lora_B.weight). */
  readonly b: Float32Array;
}

/** A PEFT LoRA adapter, validated against a base model. */
export interface LoraAdapter {
  readonly rank: number;
  /** lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora. */
  readonly scale: number;
  /** [numLayers] the adapted projections of each layer (absent = not adapted). */
  readonly layers: readonly Partial<Record<LoraTarget, LoraProjection>>[];
}

export const ADAPTER_CONFIG_FILE = "adapter_config.json";
export const ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors";

function invalid(dir: string, message: string): ModelError {
  return new ModelError("INVALID_ADAPTER", `LoRA adapter ${dir}: ${message}`);
}

/** [outFeatures, inFeatures] of a target projection in the base model. */
export function loraTargetShape(config: LlamaConfig, target: LoraTarget): [number, number] {
  const { hiddenSize: h, intermediateSize: i, numHeads, numKvHeads, headDim } = config;
  switch (target) {
    case "q_proj":
      return [numHeads * headDim, h];
    case "k_proj":
    case "v_proj":
      return [numKvHeads * headDim, h];
    case "o_proj":
      return [h, numHeads * headDim];
    case "gate_proj":
    case "up_proj":
      return [i, h];
    case "down_proj":
      return [h, i];
  }
}

interface ParsedAdapterConfig {
  readonly rank: number;
  readonly scale: number;
}

/** Validates adapter_config.json: a LORA adapter over supported projections only. */
export function parseAdapterConfig(
  dir: string,
  json: unknown,
  maxRank: number,
): ParsedAdapterConfig {
  if (typeof json !== "object" || json === null) throw invalid(dir, "config is not an object");
  const c = json as Record<string, unknown>;
  if (c.peft_type !== undefined && c.peft_type !== "LORA") {
    throw invalid(dir, `peft_type ${String(c.peft_type)} is not supported (LORA only)`);
  }
  const rank = c.r;
  if (typeof rank !== "number" || !Number.isInteger(rank) || rank < 1) {
    throw invalid(dir, `r must be a positive integer, got ${JSON.stringify(rank)}`);
  }
  if (rank > maxRank) throw invalid(dir, `rank ${rank} is above max_lora_rank ${maxRank}`);
  const alpha = c.lora_alpha ?? rank;
  if (typeof alpha !== "number" || !Number.isFinite(alpha)) {
    throw invalid(dir, `lora_alpha must be a number, got ${JSON.stringify(alpha)}`);
  }
  const saved = c.modules_to_save;
  if (Array.isArray(saved) && saved.length > 0) {
    throw invalid(dir, `modules_to_save (${saved.join(", ")}) is not supported`);
  }
  const targets = c.target_modules;
  if (Array.isArray(targets)) {
    const bad = targets.filter((t) => !(LORA_TARGETS as readonly unknown[]).includes(t));
    if (bad.length > 0) {
      throw invalid(
        dir,
        `unsupported target modules ${bad.join(", ")} (${LORA_TARGETS.join(", ")} only)`,
      );
    }
  }
  if (c.bias !== undefined && c.bias !== "none") {
    throw invalid(dir, `bias ${String(c.bias)} is not supported (none only)`);
  }
  if (c.fan_in_fan_out === true) throw invalid(dir, "fan_in_fan_out is not supported");
  const scale = c.use_rslora === true ? alpha / Math.sqrt(rank) : alpha / rank;
  return { rank, scale };
}

const TENSOR_NAME =
  /^base_model\.model\.model\.layers\.(\d+)\.(?:self_attn|mlp)\.(\w+)\.lora_([AB])(?:\.default)?\.weight$/;

/**
 * Loads a PEFT LoRA adapter directory (adapter_config.json + adapter_model.safetensors) and
 * checks it against `config`. Throws ModelError: NOT_FOUND for a missing directory or file,
 * INVALID_CHECKPOINT for a corrupt safetensors file, INVALID_ADAPTER for anything else Kiln
 * cannot serve (rank above `maxRank`, embeddings, lm_head, shapes that do not match).
 */
export async function loadLoraAdapter(
  dir: string,
  config: LlamaConfig,
  maxRank: number,
): Promise<LoraAdapter> {
  const parsed = parseAdapterConfig(
    dir,
    await readJsonFile(join(dir, ADAPTER_CONFIG_FILE), "INVALID_ADAPTER"),
    maxRank,
  );
  const path = join(dir, ADAPTER_WEIGHTS_FILE);
  let fileLen: number;
  try {
    fileLen = (await stat(path)).size;
  } catch (err) {
    if (hasErrnoCode(err, "ENOENT")) throw new ModelError("NOT_FOUND", `${path} does not exist`);
    throw err;
  }
  const layers: Partial<Record<LoraTarget, { a?: Float32Array; b?: Float32Array }>>[] = Array.from(
    { length: config.numLayers },
    () => ({}),
  );
  const handle = await open(path, "r");
  try {
    const header = await readSafetensorsHeader(handle, fileLen, path);
    for (const entry of header.entries) {
      const m = TENSOR_NAME.exec(entry.name);
      if (m === null)
        throw invalid(
          dir,
          `tensor ${entry.name} is not supported (embeddings, lm_head and other modules cannot be adapted)`,
        );
      const layer = Number(m[1]);
      const target = m[2] as LoraTarget;
      if (!(LORA_TARGETS as readonly string[]).includes(target)) {
        throw invalid(dir, `tensor ${entry.name}: target ${target} is not supported`);
      }
      if (layer >= config.numLayers) {
        throw invalid(dir, `tensor ${entry.name}: the base model has ${config.numLayers} layers`);
      }
      const [outF, inF] = loraTargetShape(config, target);
      const isA = m[3] === "A";
      const want = isA ? [parsed.rank, inF] : [outF, parsed.rank];
      if (entry.shape.length !== 2 || entry.shape[0] !== want[0] || entry.shape[1] !== want[1]) {
        throw invalid(
          dir,
          `tensor ${entry.name} has shape [${entry.shape.join(", ")}], the base model needs [${want.join(", ")}]`,
        );
      }
      const slot = layers[layer]![target] ?? {};
      layers[layer]![target] = slot;
      slot[isA ? "a" : "b"] = await readTensorData(handle, entry, path);
    }
  } finally {
    await handle.close();
  }
  let numAdapted = 0;
  const out = layers.map((layer, l) => {
    const done: Partial<Record<LoraTarget, LoraProjection>> = {};
    for (const target of LORA_TARGETS) {
      const p = layer[target];
      if (p === undefined) continue;
      if (p.a === undefined || p.b === undefined) {
        throw invalid(
          dir,
          `layer ${l} ${target} has lora_${p.a === undefined ? "A" : "B"} missing`,
        );
      }
      done[target] = { a: p.a, b: p.b };
      numAdapted++;
    }
    return done;
  });
  if (numAdapted === 0) throw invalid(dir, `${ADAPTER_WEIGHTS_FILE} holds no LoRA weights`);
  return { rank: parsed.rank, scale: parsed.scale, layers: out };
}
