import type { FastifyInstance } from "fastify";
import type { BatchService } from "./batch-service";
import { registerBatchRoutes } from "./batches-routes";
import { DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_FILE_LINES } from "./config";
import { registerFileRoutes } from "./files-routes";

export { BatchService } from "./batch-service";
export { type BatchConfig, parseBatchConfig } from "./config";
export { FileStore } from "./file-store";
export { BATCH_DISABLED_MESSAGE } from "./unavailable";

/** The Files and Batches routes; with `service` null every one of them answers 503. */
export function registerBatchApi(app: FastifyInstance, service: BatchService | null): void {
  const limits = service?.limits ?? {
    maxBytes: DEFAULT_MAX_FILE_BYTES,
    maxLines: DEFAULT_MAX_FILE_LINES,
  };
  registerFileRoutes(app, service?.files ?? null, limits);
  registerBatchRoutes(app, service);
  service?.interactive.register(app);
}
