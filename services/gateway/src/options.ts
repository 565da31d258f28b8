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
  readonly bodyLimitBytes: number | undefined;
  readonly logLevel: string;
}

function parseIntFlag(text: string, flag: string, min: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min) throw new Error(`${flag}: expected an integer ≥ ${min}`);
  return n;
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
      "max-body-bytes": { type: "string" },
      "api-keys-file": { type: "string" },
      "audit-log": { type: "string" },
      guard: { type: "string" },
      "guard-rules-file": { type: "string" },
      "guard-unsafe-pattern": { type: "string" },
      "guard-template": { type: "string" },
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
    bodyLimitBytes:
      maxBody === undefined ? undefined : parseIntFlag(maxBody, "--max-body-bytes", 1),
    logLevel: env.KILN_LOG_LEVEL ?? "warn",
  };
}
