import type { FastifyRequest } from "fastify";
import type { GatewayDeps } from "../app";
import { priorityOf } from "../batch/priority";
import type { GenerationContext } from "../generation";
import { tenancyOf } from "../tenancy";

/**
 * The context an interactive route generates under: the gateway's router and codec, the
 * request's abort `signal`, its tenant and cache salt (from `body.cache_salt`) and its
 * priority class. Returns a fresh object; reads `request` and mutates nothing.
 */
export function generationContext(
  deps: GatewayDeps,
  request: FastifyRequest,
  body: { cache_salt?: string | null },
  signal: AbortSignal,
): GenerationContext {
  return {
    router: deps.router,
    codec: deps.codec,
    signal,
    tenancy: tenancyOf(request, body),
    ...priorityOf(request),
  };
}
