import { resolve } from "node:path";
import { parseArgs } from "node:util";

/** Settings of the Batch and Files APIs (flags win over environment variables). */
export interface BatchConfig {
  /** Root of the data directory; files live in `<dataDir>/files`. */
  readonly dataDir: string;
  /** Redis for the batch queue and state; null turns the Batch and Files APIs off (503). */
  readonly redisUrl: string | null;
  readonly maxFileBytes: number;
  readonly maxFileLines: number;
  /** Batch lines this gateway runs at once. */
  readonly concurrency: number;
  /**
   * Batch lines this gateway starts at once while interactive generations are running here
   * (and for `yieldGraceMs` after the last ends): batch work yields to interactive latency.
   */
  readonly busyConcurrency: number;
  /** Tries per line (retryable failures: 429, 5xx) before its last error is recorded. */
  readonly maxAttempts: number;
  /** A line whose gateway died is run again after this long (BullMQ lock and stall check). */
  readonly lockMs: number;
  /**
   * Seconds a batch has before it expires (OpenAI's only window, "24h", by default); lines
   * unanswered by then get batch_expired errors. Shortened for tests.
   */
  readonly completionWindowS: number;
}

export const DEFAULT_MAX_FILE_BYTES = 200 * 1024 * 1024;
export const DEFAULT_MAX_FILE_LINES = 50_000;

/** The gateway flags of the Batch and Files APIs (each also an environment variable). */
export const BATCH_FLAGS = {
  "data-dir": { type: "string" },
  "redis-url": { type: "string" },
  "batch-max-file-bytes": { type: "string" },
  "batch-max-file-lines": { type: "string" },
  "batch-concurrency": { type: "string" },
  "batch-concurrency-busy": { type: "string" },
  "batch-max-attempts": { type: "string" },
  "batch-lock-ms": { type: "string" },
  "batch-completion-window-s": { type: "string" },
} as const;

function intOf(text: string, name: string, min: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min) throw new Error(`${name}: expected an integer ≥ ${min}`);
  return n;
}

/** Reads the batch flags from `argv` (unknown flags ignored) and KILN_* variables from `env`. */
export function parseBatchConfig(argv: readonly string[], env: NodeJS.ProcessEnv): BatchConfig {
  const { values } = parseArgs({
    args: [...argv],
    strict: false,
    options: BATCH_FLAGS,
  });
  const pick = (flag: string, envName: string, fallback: string) =>
    String(values[flag] ?? env[envName] ?? fallback);
  const redisUrl = pick("redis-url", "KILN_REDIS_URL", "");
  return {
    dataDir: resolve(pick("data-dir", "KILN_DATA_DIR", ".kiln-data")),
    redisUrl: redisUrl === "" ? null : redisUrl,
    maxFileBytes: intOf(
      pick("batch-max-file-bytes", "KILN_BATCH_MAX_FILE_BYTES", String(DEFAULT_MAX_FILE_BYTES)),
      "--batch-max-file-bytes",
      1,
    ),
    maxFileLines: intOf(
      pick("batch-max-file-lines", "KILN_BATCH_MAX_FILE_LINES", String(DEFAULT_MAX_FILE_LINES)),
      "--batch-max-file-lines",
      1,
    ),
    concurrency: intOf(
      pick("batch-concurrency", "KILN_BATCH_CONCURRENCY", "4"),
      "--batch-concurrency",
      1,
    ),
    busyConcurrency: intOf(
      pick("batch-concurrency-busy", "KILN_BATCH_CONCURRENCY_BUSY", "1"),
      "--batch-concurrency-busy",
      1,
    ),
    maxAttempts: intOf(
      pick("batch-max-attempts", "KILN_BATCH_MAX_ATTEMPTS", "5"),
      "--batch-max-attempts",
      1,
    ),
    lockMs: intOf(pick("batch-lock-ms", "KILN_BATCH_LOCK_MS", "30000"), "--batch-lock-ms", 1000),
    completionWindowS: intOf(
      pick("batch-completion-window-s", "KILN_BATCH_COMPLETION_WINDOW_S", "86400"),
      "--batch-completion-window-s",
      1,
    ),
  };
}
