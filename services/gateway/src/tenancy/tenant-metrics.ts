import { Counter, type Registry } from "@kiln/telemetry";

/** Per-tenant series. Tenant names come from the keys file (bounded by the operator). */
export class TenantMetrics {
  readonly requests: Counter<"tenant" | "status">;
  readonly tokens: Counter<"tenant" | "kind">;
  readonly rateLimited: Counter<"tenant" | "limit">;

  constructor(registry: Registry) {
    this.requests = new Counter({
      name: "kiln_tenant_requests_total",
      help: "Requests per tenant by HTTP status.",
      labelNames: ["tenant", "status"],
      registers: [registry],
    });
    this.tokens = new Counter({
      name: "kiln_tenant_tokens_total",
      help: "Tokens per tenant: kind is prompt or completion.",
      labelNames: ["tenant", "kind"],
      registers: [registry],
    });
    this.rateLimited = new Counter({
      name: "kiln_tenant_rate_limited_total",
      help: "Requests refused with 429 by a tenant limit (requests, tokens or concurrency).",
      labelNames: ["tenant", "limit"],
      registers: [registry],
    });
  }
}
