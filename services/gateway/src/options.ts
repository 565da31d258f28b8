import { existsSync } from "node:fs";
import { basename, isAbsolute } from "node:path";
import { parseArgs } from "node:util";
import { parseApiKeys } from "./auth";

export interface GatewayOptions {
  readonly host: string;
  /** 0 picks a free port (printed on stdout once listening). */
  readonly port: number;
  /** The router's host:port. */
  readonly routerAddress: string;
  /** A local model directory or a Hugging Face repo id (for the tokenizer and config). */
  readonly model: string;
  /** The `model` name clients use. */
  readonly servedModelName: string;
  readonly apiKeys: readonly string[] | null;
  /** How long in-flight requests may run after SIGINT/SIGTERM before they are aborted. */
  readonly drainTimeoutMs: number;
  readonly bodyLimitBytes: number | undefined;
  readonly logLevel: string;
  /** Where stored Responses API responses live: Redis at this URL, or null for memory. */
  readonly redisUrl: string | null;
  /** Bounds of the in-memory response store (the TTL applies to Redis too). */
  readonly responsesMaxStored: number;
  readonly responsesTtlS: number;
  /** "embed" serves /v1/embeddings (pooling the final hidden states); "generate" does not. */
  readonly task: "generate" | "embed";
  /** Null: the model's sentence-transformers pooling config, else "last". */
  readonly pooling: "last" | "mean" | null;
  /** L2-normalise embeddings. */
  readonly isEmbeddingNormalized: boolean;
}

function oneOf<T extends string>(text: string, flag: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(text)) {
    throw new Error(`${flag}: expected one of ${allowed.join(", ")} (got "${text}")`);
  }
  return text as T;
}

function parseIntFlag(text: string, flag: string, min: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min) throw new Error(`${flag}: expected an integer ≥ ${min}`);
  return n;
}

/**
 * The name a model is served under: a Hub repo id as given ("org/name"), a local directory
 * by its last path component ("stories260K").
 */
export function defaultServedName(model: string): string {
  const isLocal =
    existsSync(model) ||
    isAbsolute(model) ||
    model.startsWith(".") ||
    model.split("/").length !== 2;
  return isLocal ? basename(model.replace(/\/+$/, "")) : model;
}

/** Flags win over environment variables, which win over defaults. Throws naming the flag. */
export function parseGatewayOptions(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
): GatewayOptions {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      host: { type: "string" },
      port: { type: "string" },
      router: { type: "string" },
      model: { type: "string" },
      "served-model-name": { type: "string" },
      "drain-timeout": { type: "string" },
      "max-body-bytes": { type: "string" },
      "redis-url": { type: "string" },
      "responses-max-stored": { type: "string" },
      "responses-ttl": { type: "string" },
      task: { type: "string" },
      pooling: { type: "string" },
      "embed-normalize": { type: "string" },
    },
  });
  const model = values.model ?? env.KILN_MODEL;
  if (!model)
    throw new Error("no model: pass --model or set KILN_MODEL (a directory or a Hub repo id)");
  const routerAddress = values.router ?? env.KILN_ROUTER_ADDRESS;
  if (!routerAddress)
    throw new Error("no router: pass --router host:port or set KILN_ROUTER_ADDRESS");
  const maxBody = values["max-body-bytes"] ?? env.KILN_MAX_BODY_BYTES;
  return {
    host: values.host ?? env.HOST ?? "127.0.0.1",
    port: parseIntFlag(values.port ?? env.PORT ?? "8000", "--port", 0),
    routerAddress,
    model,
    servedModelName:
      values["served-model-name"] ?? env.KILN_SERVED_MODEL_NAME ?? defaultServedName(model),
    apiKeys: parseApiKeys(env.KILN_API_KEYS),
    drainTimeoutMs:
      1000 *
      parseIntFlag(
        values["drain-timeout"] ?? env.KILN_DRAIN_TIMEOUT_S ?? "30",
        "--drain-timeout",
        0,
      ),
    bodyLimitBytes:
      maxBody === undefined ? undefined : parseIntFlag(maxBody, "--max-body-bytes", 1),
    logLevel: env.KILN_LOG_LEVEL ?? "warn",
    redisUrl: values["redis-url"] ?? env.KILN_REDIS_URL ?? null,
    responsesMaxStored: parseIntFlag(
      values["responses-max-stored"] ?? env.KILN_RESPONSES_MAX_STORED ?? "1000",
      "--responses-max-stored",
      1,
    ),
    task: oneOf(values.task ?? env.KILN_TASK ?? "generate", "--task", ["generate", "embed"]),
    pooling: ((p) => (p === undefined ? null : oneOf(p, "--pooling", ["last", "mean"] as const)))(
      values.pooling ?? env.KILN_POOLING,
    ),
    isEmbeddingNormalized:
      oneOf(values["embed-normalize"] ?? env.KILN_EMBED_NORMALIZE ?? "true", "--embed-normalize", [
        "true",
        "false",
      ]) === "true",
    responsesTtlS: parseIntFlag(
      values["responses-ttl"] ?? env.KILN_RESPONSES_TTL_S ?? "3600",
      "--responses-ttl",
      1,
    ),
  };
}
