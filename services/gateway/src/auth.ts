import { timingSafeEqual } from "node:crypto";
import { KilnError } from "@kiln/proto";
import type { FastifyInstance } from "fastify";
import { isBatchLine } from "./batch/priority";

/** `KILN_API_KEYS="k1,k2"` → ["k1", "k2"]; unset or empty → null (no authentication). */
export function parseApiKeys(value: string | undefined): readonly string[] | null {
  const keys = (value ?? "")
    .split(",")
    .map((k) => k.trim())
    .filter((k) => k.length > 0);
  return keys.length > 0 ? keys : null;
}

function isKnownKey(key: string, keys: readonly string[]): boolean {
  const given = Buffer.from(key);
  return keys.some((k) => {
    const known = Buffer.from(k);
    return known.length === given.length && timingSafeEqual(known, given);
  });
}

/** Requires `Authorization: Bearer <key>` on /v1/* when keys are configured; /health stays open. */
export function installAuth(app: FastifyInstance, keys: readonly string[] | null): void {
  if (!keys) return;
  app.addHook("onRequest", async (request) => {
    if (!request.url.startsWith("/v1/") || isBatchLine(request)) return;
    const header = request.headers.authorization ?? "";
    const match = /^Bearer\s+(.+)$/i.exec(header);
    if (!match) {
      throw new KilnError(
        "UNAUTHORIZED",
        "You didn't provide an API key. Pass it as 'Authorization: Bearer <key>'.",
      );
    }
    if (!isKnownKey(match[1]!.trim(), keys)) {
      throw new KilnError("UNAUTHORIZED", "Incorrect API key provided.");
    }
  });
}
