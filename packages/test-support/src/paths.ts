import { resolve } from "node:path";

/** The repository root (this file is packages/test-support/src/paths.ts). */
export const REPO_ROOT = resolve(import.meta.dirname, "../../..");
/**
 * The repository's sibling `shared` directory: test models and golden files. `KILN_SHARED_DIR`
 * moves it, as it does for @kiln/model's `SHARED_DIR` (the random-model tokenizer).
 */
export const SHARED_DIR = process.env.KILN_SHARED_DIR ?? resolve(REPO_ROOT, "../shared");
export const MODELS_DIR = resolve(SHARED_DIR, "models");
export const STORIES_DIR = resolve(MODELS_DIR, "stories260K");
export const STORIES_NAME = "stories260K";
export const LORA_A_DIR = resolve(MODELS_DIR, "stories260K-lora-a");
export const LLAMA2_TOKENIZER_DIR = resolve(MODELS_DIR, "llama2-tokenizer");
export const GOLDEN_DIR = resolve(SHARED_DIR, "golden");
export const STORIES_GOLDEN_PATH = resolve(GOLDEN_DIR, "stories260K-greedy.json");
export const LORA_A_GOLDEN_PATH = resolve(GOLDEN_DIR, "stories260K-lora-a-greedy.json");
