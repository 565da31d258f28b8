import { existsSync } from "node:fs";
import { basename, isAbsolute } from "node:path";
import { parseArgs } from "node:util";
import { parseApiKeys } from "./auth";
import { BATCH_FLAGS } from "./batch/config";
import { parseLoraModules } from "./lora/registry";
import {
  isToolParserName,
  TOOL_PARSER_NAMES,
  type ToolParserName,
} from "./structured/tool-parsers";

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
  /** JSON keys file with tenants and limits (re-read on change and SIGHUP); null: none. */
  readonly apiKeysFile: string | null;
  /** Audit log destination: a file path, "stdout" or "stderr"; null: no audit log. */
  readonly auditLog: string | null;
  /** KILN_GUARD: which guards run ("rules", "llm", or both comma-separated); empty: none. */
  readonly guards: readonly ("rules" | "llm")[];
  /** Deny patterns for the rules guard, one regular expression a line. */
  readonly guardRulesFile: string | null;
  /** The LLM guard's verdict regex (a match is unsafe); null: /^\s*unsafe/i. */
  readonly guardUnsafePattern: string | null;
  /** The LLM guard's prompt: "llama-guard" (default) or "short" (small-context guard models). */
  readonly guardTemplate: "llama-guard" | "short";
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
  /** Adapters loaded at start (KILN_LORA_MODULES, --lora-modules: name=path,...). */
  readonly loraModules: readonly { name: string; path: string }[];
  /** KILN_ALLOW_RUNTIME_LORA_UPDATING=1 / --allow-runtime-lora-updating: the admin endpoints. */
  readonly allowRuntimeLoraUpdating: boolean;
  /** KILN_TOOL_CALL_PARSER / --tool-call-parser: the model family's tool-call format (hermes). */
  readonly toolCallParser: ToolParserName;
  /** Highest adapter rank accepted (KILN_MAX_LORA_RANK, --max-lora-rank; 64). */
  readonly maxLoraRank: number;
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

/** Seconds (fractions allowed) as ms; unset or 0 means no limit. */
function parseTimeoutS(text: string | undefined): number | null {
  if (text === undefined || text.trim() === "") return null;
  const s = Number(text);
  if (!Number.isFinite(s) || s < 0) {
    throw new Error(`--request-timeout: expected seconds ≥ 0, got "${text}"`);
  }
  return s === 0 ? null : Math.round(s * 1000);
}

function parseTemplate(text: string): "llama-guard" | "short" {
  if (text !== "llama-guard" && text !== "short") {
    throw new Error(`--guard-template: expected llama-guard or short, got "${text}"`);
  }
  return text;
}

function parseGuards(text: string): ("rules" | "llm")[] {
  const names = text
    .split(",")
    .map((g) => g.trim())
    .filter((g) => g !== "");
  for (const name of names) {
    if (name !== "rules" && name !== "llm") {
      throw new Error(`--guard: unknown guard "${name}" (expected rules, llm or both)`);
    }
  }
  return names as ("rules" | "llm")[];
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
      "api-keys-file": { type: "string" },
      "audit-log": { type: "string" },
      guard: { type: "string" },
      "guard-rules-file": { type: "string" },
      "guard-unsafe-pattern": { type: "string" },
      "guard-template": { type: "string" },
      "responses-max-stored": { type: "string" },
      "responses-ttl": { type: "string" },
      task: { type: "string" },
      pooling: { type: "string" },
      "embed-normalize": { type: "string" },
      "lora-modules": { type: "string" },
      "allow-runtime-lora-updating": { type: "boolean" },
      "tool-call-parser": { type: "string" },
      "max-lora-rank": { type: "string" },
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
    apiKeysFile: values["api-keys-file"] || env.KILN_API_KEYS_FILE || null,
    auditLog: values["audit-log"] || env.KILN_AUDIT_LOG || null,
    guards: parseGuards(values.guard ?? env.KILN_GUARD ?? ""),
    guardRulesFile: values["guard-rules-file"] || env.KILN_GUARD_RULES_FILE || null,
    guardUnsafePattern: values["guard-unsafe-pattern"] || env.KILN_GUARD_UNSAFE_PATTERN || null,
    guardTemplate: parseTemplate(
      values["guard-template"] || env.KILN_GUARD_TEMPLATE || "llama-guard",
    ),
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
    loraModules: parseLoraModules(values["lora-modules"] ?? env.KILN_LORA_MODULES),
    allowRuntimeLoraUpdating:
      values["allow-runtime-lora-updating"] ??
      ["1", "true"].includes(env.KILN_ALLOW_RUNTIME_LORA_UPDATING ?? ""),
    maxLoraRank: parseIntFlag(
      values["max-lora-rank"] ?? env.KILN_MAX_LORA_RANK ?? "64",
      "--max-lora-rank",
      1,
    ),
    toolCallParser: parseToolParser(values["tool-call-parser"] ?? env.KILN_TOOL_CALL_PARSER),
  };
}

function parseToolParser(value: string | undefined): ToolParserName {
  const name = value ?? "hermes";
  if (!isToolParserName(name)) {
    throw new Error(
      `--tool-call-parser: expected one of ${TOOL_PARSER_NAMES.join(", ")}, got "${name}"`,
    );
  }
  return name;
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
