import { ERROR_TABLE, KilnError, type KilnErrorCode } from "@kiln/proto";
import type { FastifyError, FastifyInstance, FastifyReply } from "fastify";

/** OpenAI's error body. `code` is the Kiln code in lower case (`model_not_found`, ...). */
export interface OpenAIErrorBody {
  readonly error: {
    readonly message: string;
    readonly type: string;
    readonly param: string | null;
    readonly code: string | null;
  };
}

/**
 * Seconds a client should wait before retrying after a 429 (the router's queue was full) or a
 * 503 (no router or worker reachable: the supervisor is restarting it, or the gateway drains).
 */
export const RETRY_AFTER_S = 1;

const RETRYABLE_CODES: ReadonlySet<KilnErrorCode> = new Set([
  "OVERLOADED",
  "UNAVAILABLE",
  "WORKER_LOST",
]);

export function errorBody(err: KilnError): OpenAIErrorBody {
  return {
    error: {
      message: err.message,
      type: ERROR_TABLE[err.code].openaiType,
      param: err.param,
      code: err.code.toLowerCase(),
    },
  };
}

/** Sends `err` with the status from ERROR_TABLE (and `Retry-After` on 429 and 503). */
export function sendError(reply: FastifyReply, err: KilnError): FastifyReply {
  const status = ERROR_TABLE[err.code].httpStatus;
  if (RETRYABLE_CODES.has(err.code)) void reply.header("retry-after", String(RETRY_AFTER_S));
  return reply.code(status).type("application/json").send(errorBody(err));
}

/**
 * Anything thrown while handling a request, as a KilnError. Fastify's own errors (bad JSON,
 * body too large) keep their 4xx meaning; anything unexpected becomes INTERNAL, whose message
 * never leaks internals.
 */
export function toKilnError(err: unknown): KilnError {
  if (err instanceof KilnError) return err;
  const fe = err as Partial<FastifyError> | null;
  const status = typeof fe?.statusCode === "number" ? fe.statusCode : 500;
  if (status === 413) return new KilnError("PAYLOAD_TOO_LARGE", "The request body is too large.");
  if (status === 404) return new KilnError("NOT_FOUND", fe?.message ?? "Not found.");
  if (status >= 400 && status < 500) {
    const message = fe?.message ?? "Invalid request.";
    return new KilnError(codeForClientStatus(status), `Invalid request: ${message}`);
  }
  return new KilnError("INTERNAL", "The server had an error while processing your request.");
}

function codeForClientStatus(status: number): KilnErrorCode {
  if (status === 401) return "UNAUTHORIZED";
  return "INVALID_REQUEST";
}

/** Installs the error and not-found handlers: every failure answers with OpenAI's body. */
export function installErrorHandlers(app: FastifyInstance): void {
  app.setErrorHandler((err, request, reply) => {
    const kilnError = toKilnError(err);
    if (kilnError.code === "INTERNAL") request.log.error({ err }, "unhandled error");
    return sendError(reply, kilnError);
  });
  app.setNotFoundHandler((request, reply) =>
    sendError(
      reply,
      new KilnError("NOT_FOUND", `Unknown route: ${request.method} ${request.url.split("?")[0]}`),
    ),
  );
}
