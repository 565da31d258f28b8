import { randomBytes } from "node:crypto";
import { PriorityClass } from "@kiln/proto";
import type { FastifyRequest } from "fastify";

/**
 * Batch lines run through the same routes as live requests (`app.inject`), marked by this
 * header carrying a secret made at startup, so a client cannot pass one off as a batch line
 * (it could only lower its own priority, but the header also lets lines skip key checks: the
 * batch was authorized when it was created).
 */
export const BATCH_LINE_HEADER = "x-kiln-batch-line";
const BATCH_LINE_TOKEN = randomBytes(16).toString("hex");

/** Headers `app.inject` sends with a batch line. */
export function batchLineHeaders(): Record<string, string> {
  return { [BATCH_LINE_HEADER]: BATCH_LINE_TOKEN };
}

export function isBatchLine(request: FastifyRequest): boolean {
  return request.headers[BATCH_LINE_HEADER] === BATCH_LINE_TOKEN;
}

/** The Generate priority class of a request: batch for batch lines, otherwise interactive. */
export function priorityOf(request: FastifyRequest): { priorityClass: PriorityClass } {
  return {
    priorityClass: isBatchLine(request)
      ? PriorityClass.PRIORITY_CLASS_BATCH
      : PriorityClass.PRIORITY_CLASS_INTERACTIVE,
  };
}
