import { existsSync, statSync } from "node:fs";
import { basename, resolve } from "node:path";

/** The model the cluster serves, before any download. */
export interface ModelSpec {
  /** A local directory (absolute) or a Hugging Face repo id to download. */
  readonly source: { readonly dir: string } | { readonly repoId: string };
  /** The name clients send as `model`. */
  readonly servedName: string;
}

const REPO_ID = /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/;

export const NO_MODEL_MESSAGE =
  "no model to serve. Set KILN_MODEL to a local Hugging Face model directory " +
  "(KILN_MODEL=/path/to/model npm start) or to a Hub repo id " +
  "(KILN_MODEL=owner/name npm start; set HF_TOKEN for gated repos).";

/**
 * KILN_MODEL as a directory (relative to where the user ran npm, INIT_CWD) or a repo id; unset,
 * the stories260K test model beside the repository when it exists. Null when there is no
 * model to serve (the caller prints NO_MODEL_MESSAGE).
 */
export function tryResolveModelSpec(
  value: string | undefined,
  userCwd: string,
  defaultDir: string,
): ModelSpec | null {
  if (value === undefined || value.trim() === "") {
    return isDirectory(defaultDir)
      ? { source: { dir: defaultDir }, servedName: basename(defaultDir) }
      : null;
  }
  const dir = resolve(userCwd, value);
  if (isDirectory(dir)) return { source: { dir }, servedName: basename(dir) };
  if (REPO_ID.test(value) && !value.startsWith(".")) {
    return { source: { repoId: value }, servedName: value };
  }
  return null;
}

function isDirectory(path: string): boolean {
  return existsSync(path) && statSync(path).isDirectory();
}
