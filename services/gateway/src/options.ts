import { existsSync } from "node:fs";
import { basename, isAbsolute } from "node:path";
import { parseArgs } from "node:util";
import { parseApiKeys } from "./auth";
import { BATCH_FLAGS } from "./batch/config";

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
      // Read by parseBatchConfig (batch/config.ts).
      ...BATCH_FLAGS,
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
  };
}
