import { KilnError } from "@kiln/proto";
import type { FastifyInstance } from "fastify";

/** Routes that hold a router stream (or several) for their whole life. */
const GENERATION_PATHS: ReadonlySet<string> = new Set([
  "/v1/chat/completions",
  "/v1/completions",
  "/v1/responses",
  "/v1/embeddings",
]);

/** What admission observed, for metrics. */
export interface AdmissionStats {
  readonly numAdmitted: number;
  readonly maxConcurrentRequests: number;
  readonly numRejected: number;
}

/**
 * The gateway's first line against a flood: at most `maxConcurrentRequests` generation
 * requests are in flight at once. One over the bound is answered 429 (OVERLOADED, with
 * `Retry-After`) in `onRequest`, before its body is parsed, its prompt tokenized or any router
 * stream opened, so a rejected request costs almost nothing. The router's bounded waiting
 * queue stays the second line. A request leaves the count when its connection's response
 * closes (finished, failed or the client went away), whichever route handled it.
 */
export function installAdmission(
  app: FastifyInstance,
  maxConcurrentRequests: number,
): () => AdmissionStats {
  let numAdmitted = 0;
  let numRejected = 0;
  app.addHook("onRequest", async (request, reply) => {
    if (request.method !== "POST" || !GENERATION_PATHS.has(request.url.split("?")[0] ?? "")) {
      return;
    }
    if (numAdmitted >= maxConcurrentRequests) {
      numRejected++;
      throw new KilnError(
        "OVERLOADED",
        `The server is handling its maximum of ${maxConcurrentRequests} concurrent requests; retry later.`,
      );
    }
    numAdmitted++;
    reply.raw.once("close", () => {
      numAdmitted--;
    });
  });
  return () => ({ numAdmitted, maxConcurrentRequests, numRejected });
}
