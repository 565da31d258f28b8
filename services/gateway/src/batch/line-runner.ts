import { randomBytes } from "node:crypto";
import { KilnError } from "@kiln/proto";
import type { FastifyInstance } from "fastify";
import { errorBody } from "../errors";
import type { LineResult } from "./batch-store";
import { batchLineHeaders } from "./priority";

/** The outcome of one attempt at a line: its answer, and whether another try could succeed. */
export interface LineAttempt {
  readonly result: LineResult;
  /** 429 or 5xx from the live path (router down, worker lost, queue full, draining). */
  readonly isRetryable: boolean;
}

const RETRYABLE_STATUSES = new Set([429, 500, 502, 503, 504]);

/**
 * Runs one input line through the gateway's own routes (`app.inject`), so a batch line gets
 * exactly what the same request would get live: the same validation, errors and output. A line
 * that is not JSON is sent as it is, so its error is the live parser's. `signal` aborts a
 * running generation (cancel).
 */
export async function runLine(
  app: FastifyInstance,
  endpoint: string,
  text: string,
  signal: AbortSignal,
): Promise<LineAttempt> {
  const parsed = tryParse(text);
  const customId = typeof parsed?.custom_id === "string" ? parsed.custom_id : null;
  const mismatch = parsed ? checkEnvelope(parsed, endpoint) : null;
  if (mismatch) return { result: answer(customId, 400, errorBody(mismatch)), isRetryable: false };
  const payload = parsed ? JSON.stringify(parsed.body ?? null) : text;
  const response = await app.inject({
    method: "POST",
    url: endpoint,
    headers: { "content-type": "application/json", ...batchLineHeaders() },
    payload,
    signal,
  });
  let body: unknown;
  try {
    body = response.json();
  } catch {
    body = errorBody(
      new KilnError("INTERNAL", "The server had an error while processing your request."),
    );
  }
  return {
    result: answer(customId, response.statusCode, body),
    isRetryable: RETRYABLE_STATUSES.has(response.statusCode),
  };
}

interface LineEnvelope {
  custom_id?: unknown;
  method?: unknown;
  url?: unknown;
  body?: unknown;
}

function tryParse(text: string): LineEnvelope | null {
  try {
    const value = JSON.parse(text) as unknown;
    return value !== null && typeof value === "object" && !Array.isArray(value)
      ? (value as LineEnvelope)
      : null;
  } catch {
    return null;
  }
}

function checkEnvelope(line: LineEnvelope, endpoint: string): KilnError | null {
  if (line.method !== "POST") {
    return new KilnError(
      "INVALID_REQUEST",
      "Each batch line's 'method' must be \"POST\".",
      "method",
    );
  }
  if (line.url !== endpoint) {
    return new KilnError(
      "INVALID_REQUEST",
      `This line's 'url' (${JSON.stringify(line.url)}) does not match the batch's endpoint ${endpoint}.`,
      "url",
    );
  }
  const body = line.body as { stream?: unknown } | undefined;
  if (body && typeof body === "object" && body.stream === true) {
    return new KilnError(
      "INVALID_REQUEST",
      "Batch lines cannot be streamed ('stream': true).",
      "body.stream",
    );
  }
  return null;
}

/** One line of the output (2xx) or error file, in OpenAI's batch format. */
function answer(customId: string | null, statusCode: number, body: unknown): LineResult {
  const requestId =
    typeof (body as { id?: unknown })?.id === "string"
      ? (body as { id: string }).id
      : `req_${randomBytes(12).toString("hex")}`;
  const line = {
    id: `batch_req_${randomBytes(12).toString("hex")}`,
    custom_id: customId,
    response: { status_code: statusCode, request_id: requestId, body },
    error: null,
  };
  return { isError: statusCode < 200 || statusCode >= 300, line: JSON.stringify(line) };
}
