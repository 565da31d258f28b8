import type { GenerationDefaults } from "@kiln/model";
import { KilnError } from "@kiln/proto";
import type { LoraRegistry, ServedAdapter } from "./lora/registry";

/** What the gateway knows about the one model it serves. */
export interface ModelInfo {
  /** The name clients send as `model` (and see in /v1/models). */
  readonly id: string;
  /** Unix seconds, shown as `created` in /v1/models. */
  readonly created: number;
  /** Prompt plus completion tokens may not exceed this (max_position_embeddings). */
  readonly contextLen: number;
  readonly vocabSize: number;
  /** Sampling defaults from generation_config.json; request fields override them. */
  readonly defaults: GenerationDefaults;
}

/** Throws MODEL_NOT_FOUND (404) unless `model` names the served model. */
export function checkModel(model: string, info: ModelInfo): void {
  if (model !== info.id) {
    throw new KilnError(
      "MODEL_NOT_FOUND",
      `The model \`${model}\` does not exist. This server serves \`${info.id}\`.`,
      "model",
    );
  }
}

/**
 * The adapter `model` names, or null for the base model. Throws MODEL_NOT_FOUND (404) for
 * anything else, an unloaded adapter included.
 */
export function resolveModel(
  model: string,
  info: ModelInfo,
  lora: LoraRegistry | undefined,
): ServedAdapter | null {
  if (model === info.id) return null;
  const adapter = lora?.get(model);
  if (adapter !== undefined) {
    lora?.countRequest(model);
    return adapter;
  }
  throw new KilnError(
    "MODEL_NOT_FOUND",
    `The model \`${model}\` does not exist. This server serves \`${info.id}\`${lora && lora.list().length > 0 ? " and its LoRA adapters" : ""}.`,
    "model",
  );
}
