/**
 * Errors raised while reading a model directory or fetching one from the Hub.
 * Every failure carries a code so the worker can report it across a process boundary.
 */
export type ModelErrorCode =
  /** config.json (or generation_config.json) is missing a field, has a wrong type, or names
   * an architecture / rope scaling Kiln does not implement. */
  | "INVALID_CONFIG"
  /** A safetensors file or its index is malformed, truncated, or disagrees with config.json. */
  | "INVALID_CHECKPOINT"
  /** A file, repository or revision does not exist (locally or on the Hub). */
  | "NOT_FOUND"
  /** The Hub refused the request (401/403): a token is missing or lacks access. */
  | "UNAUTHORIZED"
  /** The Hub answered with an unexpected status or the transfer failed. */
  | "DOWNLOAD_FAILED"
  /** A LoRA adapter Kiln cannot serve: rank above the limit, an unsupported target, shapes
   * that do not match the base model, a malformed adapter_config.json. */
  | "INVALID_ADAPTER";

export class ModelError extends Error {
  readonly code: ModelErrorCode;

  constructor(code: ModelErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "ModelError";
    this.code = code;
  }
}

/** True when `err` is a Node system error with the given errno code (e.g. "ENOENT"). */
export function hasErrnoCode(err: unknown, code: string): boolean {
  return typeof err === "object" && err !== null && (err as { code?: unknown }).code === code;
}
