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
  /** How long one request may run before it ends with 504 deadline_exceeded; null = no limit. */
  readonly requestTimeoutMs: number | null;
  readonly bodyLimitBytes: number | undefined;
  /** KILN_MAX_CONCURRENT_REQUESTS: generation requests in flight at once (default: buildApp's). */
  readonly maxConcurrentRequests: number | undefined;
  /** KILN_MAX_STREAM_BUFFER_BYTES: unsent bytes an SSE client may queue before it is cut off. */
  readonly maxStreamBufferBytes: number | undefined;
  readonly logLevel: string;
  /**
   * Router/worker `/metrics` URLs whose `kiln_*` series the gateway's `/metrics` also serves
   * (`npm start` sets them; empty in Kubernetes, where every pod is scraped).
   */
  readonly metricsUpstreams: readonly string[];
}

function parseIntFlag(text: string, flag: string, min: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min) throw new Error(`${flag}: expected an integer ≥ ${min}`);
  return n;
}

/** Seconds (fractions allowed) as ms; unset or 0 means no limit. */
function parseTimeoutS(text: string | undefined): number | null {
  if (text === undefined || text.trim() === "") return null;
  const s = Number(text);
  if (!Number.isFinite(s) || s < 0) {
    throw new Error(`--request-timeout: expected seconds ≥ 0, got "${text}"`);
  }
  return s === 0 ? null : Math.round(s * 1000);
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
      "request-timeout": { type: "string" },
      "max-body-bytes": { type: "string" },
      "max-concurrent-requests": { type: "string" },
      "max-stream-buffer-bytes": { type: "string" },
      "metrics-upstream": { type: "string", multiple: true },
    },
  });
  const model = values.model ?? env.KILN_MODEL;
  if (!model)
    throw new Error("no model: pass --model or set KILN_MODEL (a directory or a Hub repo id)");
  const routerAddress = values.router ?? env.KILN_ROUTER_ADDRESS;
  if (!routerAddress)
    throw new Error("no router: pass --router host:port or set KILN_ROUTER_ADDRESS");
  const maxBody = values["max-body-bytes"] ?? env.KILN_MAX_BODY_BYTES;
  const maxConcurrent = values["max-concurrent-requests"] ?? env.KILN_MAX_CONCURRENT_REQUESTS;
  const maxStreamBuffer = values["max-stream-buffer-bytes"] ?? env.KILN_MAX_STREAM_BUFFER_BYTES;
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
    requestTimeoutMs: parseTimeoutS(values["request-timeout"] ?? env.KILN_REQUEST_TIMEOUT_S),
    bodyLimitBytes:
      maxBody === undefined ? undefined : parseIntFlag(maxBody, "--max-body-bytes", 1),
    maxConcurrentRequests:
      maxConcurrent === undefined
        ? undefined
        : parseIntFlag(maxConcurrent, "--max-concurrent-requests", 1),
    maxStreamBufferBytes:
      maxStreamBuffer === undefined
        ? undefined
        : parseIntFlag(maxStreamBuffer, "--max-stream-buffer-bytes", 1024),
    logLevel: env.KILN_LOG_LEVEL ?? "warn",
    metricsUpstreams: parseMetricsUpstreams(values["metrics-upstream"], env.KILN_METRICS_UPSTREAMS),
  };
}

/** `--metrics-upstream URL` (repeatable) or `KILN_METRICS_UPSTREAMS` (comma-separated URLs). */
function parseMetricsUpstreams(flags: readonly string[] | undefined, env: string | undefined) {
  const urls = (flags ?? (env ? env.split(",") : [])).map((u) => u.trim()).filter((u) => u);
  for (const url of urls) {
    if (!/^https?:\/\/[^/]+/.test(url)) {
      throw new Error(
        `--metrics-upstream: expected an http(s) URL such as http://127.0.0.1:9401/metrics, got "${url}"`,
      );
    }
  }
  return urls;
}
