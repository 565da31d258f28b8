import { KilnError } from "@kiln/proto";

/** Why the Batch and Files APIs answer 503, and how to turn them on. */
export const BATCH_DISABLED_MESSAGE =
  "The Batch and Files APIs need Redis: set KILN_REDIS_URL (or --redis-url) to a Redis server, " +
  "or put redis-server on PATH and start Kiln with `npm start`, which then runs one itself.";

export function batchDisabledError(): KilnError {
  return new KilnError("UNAVAILABLE", BATCH_DISABLED_MESSAGE);
}
