import { readFileSync } from "node:fs";
import { join } from "node:path";

/** /work/shared (the repository's sibling `shared` directory) holds test models and goldens. */
export const SHARED_DIR = join(import.meta.dirname, "../../../../../shared");
export const STORIES_DIR = join(SHARED_DIR, "models/stories260K");

export interface GoldenCase {
  readonly prompt: string;
  /** With BOS. */
  readonly prompt_ids: readonly number[];
  readonly greedy_ids: readonly number[];
  readonly greedy_text: string;
}

export function readGoldenCases(): GoldenCase[] {
  const path = join(SHARED_DIR, "golden/stories260K-greedy.json");
  return (JSON.parse(readFileSync(path, "utf8")) as { cases: GoldenCase[] }).cases;
}
