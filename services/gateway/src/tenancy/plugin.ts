import { ERROR_TABLE, KilnError, type KilnErrorCode } from "@kiln/proto";
import type { Registry } from "@kiln/telemetry";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { isBatchLine } from "../batch/priority";
import type { KeySource } from "./key-source";
import { isModelAllowed, type TenantConfig } from "./keys-file";
import { type Lease, TenantLimiter } from "./rate-limiter";
import { TenantMetrics } from "./tenant-metrics";

/** Who is calling, set by the tenancy plugin on every authenticated /v1/* request. */
export interface KilnTenant {
  readonly name: string;
  readonly isAdmin: boolean;
  /** Share of the scheduler under contention (sent to the router with each request). */
  readonly weight: number;
  /** Identifies the key in logs and audit lines; never the key itself. */
  readonly keyId: string;
  readonly config: TenantConfig;
}

declare module "fastify" {
  interface FastifyRequest {
    /** Undefined when authentication is off (no keys configured) or before the hook ran. */
    kilnTenant?: KilnTenant;
  }
}

export interface TenancyOptions {
  /** The keys; null turns authentication off (every request is anonymous, unlimited). */
  readonly keys: KeySource | null;
  /** One JSON line per request is passed here; null: no audit log. */
  readonly audit: ((line: string) => void) | null;
  /** Where kiln_tenant_* series go; null: none. */
  readonly registry: Registry | null;
  /** ms; default Date.now. */
  readonly clock?: () => number;
}

/** Per request: what the audit line and metrics report. */
interface TenantRecord {
  readonly startMs: number;
  model: string | null;
  numPromptTokens: number;
  numCompletionTokens: number;
  errorCode: string | null;
}

const RECORD = Symbol("kiln.tenancy");
type TrackedRequest = FastifyRequest & { [RECORD]?: TenantRecord };

/** The limiters of the tenants seen, kept across key reloads while a tenant's limits are equal. */
const LIMITERS = Symbol("kiln.tenancy.limiters");
type TenancyApp = FastifyInstance & { [LIMITERS]?: LimiterSet };

class LimiterSet {
  private readonly byName = new Map<string, TenantLimiter>();
  constructor(private readonly clock: () => number) {}

  of(tenant: TenantConfig): TenantLimiter {
    const known = this.byName.get(tenant.name);
    if (known && JSON.stringify(known.tenant) === JSON.stringify(tenant)) return known;
    const limiter = new TenantLimiter(tenant, this.clock);
    this.byName.set(tenant.name, limiter);
    return limiter;
  }
}

/**
 * Tenancy as a fastify plugin (root context): authenticates `Authorization: Bearer <key>` on
 * /v1/* (401 for a missing or unknown key), sets `request.kilnTenant`, and on every response
 * writes the audit line and counts `kiln_tenant_*`. Limits are taken per generation by the
 * routes through `admitGeneration`, which knows the prompt length and max_tokens.
 */
export function tenancyPlugin(opts: TenancyOptions) {
  const clock = opts.clock ?? Date.now;
  const metrics = opts.registry ? new TenantMetrics(opts.registry) : null;
  const plugin = async (app: FastifyInstance) => {
    (app as TenancyApp)[LIMITERS] = new LimiterSet(clock);
    app.decorate("kilnTenantMetrics", metrics);
    app.decorateRequest("kilnTenant", undefined);
    app.addHook("onRequest", async (request, reply) => {
      const record: TenantRecord = {
        startMs: clock(),
        model: null,
        numPromptTokens: 0,
        numCompletionTokens: 0,
        errorCode: null,
      };
      (request as TrackedRequest)[RECORD] = record;
      reply.raw.once("close", () => onClose(request, reply, record, opts, metrics, clock));
      // Batch lines are replayed in-process with a per-process secret header: the batch was
      // authorized, and its owner recorded, when it was created.
      if (!request.url.startsWith("/v1/") || isBatchLine(request)) return;
      const table = opts.keys?.table ?? null;
      if (table === null) return;
      const match = /^Bearer\s+(.+)$/i.exec(request.headers.authorization ?? "");
      if (!match) {
        throw new KilnError(
          "UNAUTHORIZED",
          "You didn't provide an API key. Pass it as 'Authorization: Bearer <key>'.",
        );
      }
      const owner = table.lookup(match[1]!.trim());
      if (owner === null) throw new KilnError("UNAUTHORIZED", "Incorrect API key provided.");
      const { tenant, isAdmin, keyId } = owner;
      request.kilnTenant = {
        name: tenant.name,
        isAdmin,
        weight: tenant.weight,
        keyId,
        config: tenant,
      };
    });
    app.addHook("onSend", async (request, reply, payload) => {
      const record = (request as TrackedRequest)[RECORD];
      if (record && reply.statusCode >= 400) record.errorCode ??= errorCodeOf(payload);
      return payload;
    });
  };
  Object.assign(plugin, { [Symbol.for("skip-override")]: true });
  return plugin;
}

function onClose(
  request: FastifyRequest,
  reply: FastifyReply,
  record: TenantRecord,
  opts: TenancyOptions,
  metrics: TenantMetrics | null,
  clock: () => number,
): void {
  const isAborted = !reply.raw.writableFinished;
  const status = isAborted ? ERROR_TABLE.CANCELLED.httpStatus : reply.raw.statusCode;
  const errorCode = record.errorCode ?? (isAborted ? "cancelled" : null);
  const tenant = request.kilnTenant?.name ?? null;
  if (metrics && tenant !== null) {
    metrics.requests.inc({ tenant, status: String(status) });
    metrics.tokens.inc({ tenant, kind: "prompt" }, record.numPromptTokens);
    metrics.tokens.inc({ tenant, kind: "completion" }, record.numCompletionTokens);
  }
  if (!opts.audit || !request.url.startsWith("/v1/")) return;
  // Never the prompt, the output or the key: only who, what model, how much and how it ended.
  const line = {
    time: new Date(record.startMs).toISOString(),
    tenant,
    key_id: request.kilnTenant?.keyId ?? null,
    method: request.method,
    path: request.routeOptions.url ?? "unmatched",
    model: record.model,
    prompt_tokens: record.numPromptTokens,
    completion_tokens: record.numCompletionTokens,
    status,
    error_code: errorCode,
    latency_ms: clock() - record.startMs,
  };
  opts.audit(JSON.stringify(line));
}

function errorCodeOf(payload: unknown): string | null {
  if (typeof payload !== "string") return null;
  try {
    const code = (JSON.parse(payload) as { error?: { code?: unknown } }).error?.code;
    return typeof code === "string" ? code : null;
  } catch {
    return null;
  }
}

// ---- helpers for routes (exported through ./index) ----

/** Throws PERMISSION_DENIED (403) unless the caller holds an admin key (or auth is off). */
export function requireAdmin(request: FastifyRequest): void {
  const tenant = request.kilnTenant;
  if (tenant !== undefined && !tenant.isAdmin) {
    throw new KilnError("PERMISSION_DENIED", "This endpoint requires an admin API key.");
  }
}

/**
 * For files and batches: the tenant that owns a new object (null when authentication is off).
 * Store it with the object and check reads with `canAccess`.
 */
export function ownerOf(request: FastifyRequest): string | null {
  return request.kilnTenant?.name ?? null;
}

/**
 * Whether the caller may see an object owned by `owner`: its own tenant, an admin key, or anyone
 * when authentication is off. Answer a false with 404 (as for a missing id), not 403.
 */
export function canAccess(request: FastifyRequest, owner: string | null): boolean {
  const tenant = request.kilnTenant;
  return tenant === undefined || tenant.isAdmin || tenant.name === owner;
}

/**
 * Throws MODEL_NOT_FOUND (404, worded as for a model that does not exist) when the tenant may
 * not use `model`; records the model for the audit line.
 */
export function checkTenantModel(request: FastifyRequest, model: string): void {
  const record = (request as TrackedRequest)[RECORD];
  if (record) record.model = model;
  const tenant = request.kilnTenant;
  if (tenant && !tenant.isAdmin && !isModelAllowed(tenant.config, model)) {
    throw new KilnError("MODEL_NOT_FOUND", `The model \`${model}\` does not exist.`, "model");
  }
}

/**
 * The max_tokens to plan with under the tenant's cap: `requested` when within it (400 naming
 * `max_tokens` when above), else the cap when the request left it to the default.
 */
export function tenantMaxTokens(
  request: FastifyRequest,
  requested: number | null,
  defaultMaxTokens: number | null = null,
): number | null {
  const cap = request.kilnTenant?.config.maxTokens ?? null;
  if (cap === null) return requested;
  if (requested === null) {
    return defaultMaxTokens !== null && defaultMaxTokens <= cap ? null : cap;
  }
  if (requested > cap) {
    throw new KilnError(
      "INVALID_REQUEST",
      `max_tokens is too large: ${requested}. This key allows at most ${cap} tokens per request.`,
      "max_tokens",
    );
  }
  return requested;
}

/** An admitted generation: settle with the tokens actually used, exactly once, at the end. */
export interface TenantTicket {
  settle(numPromptTokens: number, numCompletionTokens: number): void;
}

const NO_LEASE: Lease = { settle: () => {} };

/**
 * Applies the tenant's request, token and concurrency limits to a generation reserving
 * `numPromptTokens + maxTokens` tokens. Sets the `x-ratelimit-*` headers; throws RATE_LIMITED
 * (429, with `Retry-After`) when a limit refuses it.
 */
export function admitGeneration(
  request: FastifyRequest,
  reply: FastifyReply,
  numPromptTokens: number,
  maxTokens: number,
): TenantTicket {
  const tenant = request.kilnTenant;
  const limiters = (request.server as TenancyApp)[LIMITERS];
  const record = (request as TrackedRequest)[RECORD];
  let lease = NO_LEASE;
  if (tenant && limiters) {
    const acquisition = limiters.of(tenant.config).tryAcquire(numPromptTokens + maxTokens);
    void reply.headers(acquisition.headers);
    if (!acquisition.isAdmitted) {
      void reply.header(
        "retry-after",
        String(Math.max(1, Math.ceil(acquisition.retryAfterMs / 1000))),
      );
      const metrics = (request.server as { kilnTenantMetrics?: TenantMetrics | null })
        .kilnTenantMetrics;
      metrics?.rateLimited.inc({ tenant: tenant.name, limit: acquisition.kind });
      throw new KilnError("RATE_LIMITED", acquisition.message);
    }
    lease = acquisition.lease;
  }
  return {
    settle(numPrompt, numCompletion) {
      lease.settle(numPrompt + numCompletion);
      if (record) {
        record.numPromptTokens = numPrompt;
        record.numCompletionTokens = numCompletion;
      }
    },
  };
}

/** The prefix-cache salt: the tenant always, plus the request's own `cache_salt` when given. */
export function tenantCacheSalt(request: FastifyRequest, cacheSalt: string | null | undefined) {
  const tenant = request.kilnTenant?.name ?? "";
  if (tenant === "" && !cacheSalt) return "";
  return JSON.stringify([tenant, cacheSalt ?? null]);
}

/** What a generation tells the router about its tenant: name, weight and cache salt. */
export function tenancyOf(request: FastifyRequest, body: { cache_salt?: string | null }) {
  const tenant = request.kilnTenant;
  return {
    tenant: tenant?.name ?? "",
    tenantWeight: tenant?.weight ?? 1,
    cacheSalt: tenantCacheSalt(request, body.cache_salt),
  };
}

/** Records a stream's error code (sent inside a 200) for the audit line. */
export function recordTenantStreamError(request: FastifyRequest, code: KilnErrorCode): void {
  const record = (request as TrackedRequest)[RECORD];
  if (record) record.errorCode = code.toLowerCase();
}
