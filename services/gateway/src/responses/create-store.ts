import { Redis } from "ioredis";
import type { GatewayOptions } from "../options";
import { MemoryResponseStore, RedisResponseStore, type ResponseStore } from "./store";

/** Redis when KILN_REDIS_URL / --redis-url is set, else the bounded in-memory store. */
export function createResponseStore(
  opts: Pick<GatewayOptions, "redisUrl" | "responsesMaxStored" | "responsesTtlS">,
): ResponseStore {
  const limits = { maxEntries: opts.responsesMaxStored, ttlS: opts.responsesTtlS };
  if (!opts.redisUrl) return new MemoryResponseStore(limits);
  return new RedisResponseStore(new Redis(opts.redisUrl, { maxRetriesPerRequest: 2 }), limits);
}
