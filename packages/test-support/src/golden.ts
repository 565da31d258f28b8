import { readFileSync } from "node:fs";
import { STORIES_GOLDEN_PATH } from "./paths";

/** One greedy continuation computed by an independent reference implementation. */
export interface GoldenCase {
  readonly prompt: string;
  /** With BOS. (Mutable types so they pass to APIs that take `number[]`; each load is fresh.) */
  readonly prompt_ids: number[];
  readonly greedy_ids: number[];
  readonly greedy_text: string;
}

export interface GoldenFile {
  readonly model: string;
  /** Set on adapter goldens (the PEFT adapter merged into the reference). */
  readonly adapter?: string;
  readonly max_new_tokens: number;
  readonly cases: readonly GoldenCase[];
}

const isIdList = (v: unknown): v is number[] =>
  Array.isArray(v) && v.length > 0 && v.every((x) => Number.isInteger(x) && x >= 0);

/**
 * Reads and validates a golden file. Throws (never returns an empty list) when the file is
 * missing, empty, or any case lacks a prompt, prompt ids, greedy ids or greedy text, so a
 * test over its cases can never pass vacuously.
 */
export function loadGolden(path: string = STORIES_GOLDEN_PATH): GoldenFile {
  const raw = readFileSync(path, "utf8");
  if (raw.trim() === "") throw new Error(`golden file ${path} is empty`);
  const file = JSON.parse(raw) as Partial<GoldenFile>;
  if (!Array.isArray(file.cases) || file.cases.length === 0) {
    throw new Error(`golden file ${path} has no cases`);
  }
  file.cases.forEach((c, i) => {
    const ok =
      typeof c.prompt === "string" &&
      isIdList(c.prompt_ids) &&
      isIdList(c.greedy_ids) &&
      typeof c.greedy_text === "string";
    if (!ok) throw new Error(`golden file ${path}: case ${i} is malformed`);
  });
  if (typeof file.model !== "string") throw new Error(`golden file ${path} names no model`);
  return file as GoldenFile;
}

/** The cases of `loadGolden(path)`. */
export function loadGoldenCases(path: string = STORIES_GOLDEN_PATH): readonly GoldenCase[] {
  return loadGolden(path).cases;
}
