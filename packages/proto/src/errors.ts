import { status } from "@grpc/grpc-js";

/**
 * Every error that crosses a process boundary carries one of these codes. This one table maps
 * each code to its HTTP status, gRPC status and OpenAI error `type`; services never pick
 * statuses on their own.
 */
export type KilnErrorCode =
  | "INVALID_REQUEST"
  | "UNAUTHORIZED"
  | "MODEL_NOT_FOUND"
  | "NOT_FOUND"
  | "PAYLOAD_TOO_LARGE"
  | "OVERLOADED"
  | "CANCELLED"
  | "INTERNAL"
  | "WORKER_LOST"
  | "UNAVAILABLE"
  | "DEADLINE_EXCEEDED"
  | "RATE_LIMITED"
  | "PERMISSION_DENIED"
  | "CONTENT_FILTER";

interface ErrorMapping {
  readonly httpStatus: number;
  readonly grpcStatus: status;
  /** OpenAI's `error.type`. */
  readonly openaiType: string;
}

export const ERROR_TABLE: Readonly<Record<KilnErrorCode, ErrorMapping>> = {
  INVALID_REQUEST: {
    httpStatus: 400,
    grpcStatus: status.INVALID_ARGUMENT,
    openaiType: "invalid_request_error",
  },
  UNAUTHORIZED: {
    httpStatus: 401,
    grpcStatus: status.UNAUTHENTICATED,
    openaiType: "invalid_request_error",
  },
  MODEL_NOT_FOUND: {
    httpStatus: 404,
    grpcStatus: status.NOT_FOUND,
    openaiType: "invalid_request_error",
  },
  NOT_FOUND: { httpStatus: 404, grpcStatus: status.NOT_FOUND, openaiType: "invalid_request_error" },
  PAYLOAD_TOO_LARGE: {
    httpStatus: 413,
    grpcStatus: status.INVALID_ARGUMENT,
    openaiType: "invalid_request_error",
  },
  OVERLOADED: {
    httpStatus: 429,
    grpcStatus: status.RESOURCE_EXHAUSTED,
    openaiType: "rate_limit_error",
  },
  CANCELLED: { httpStatus: 499, grpcStatus: status.CANCELLED, openaiType: "cancelled" },
  INTERNAL: { httpStatus: 500, grpcStatus: status.INTERNAL, openaiType: "server_error" },
  WORKER_LOST: { httpStatus: 503, grpcStatus: status.UNAVAILABLE, openaiType: "server_error" },
  UNAVAILABLE: { httpStatus: 503, grpcStatus: status.UNAVAILABLE, openaiType: "server_error" },
  DEADLINE_EXCEEDED: {
    httpStatus: 504,
    grpcStatus: status.DEADLINE_EXCEEDED,
    openaiType: "timeout",
  },
  /** A tenant over its own requests/tokens/concurrency limit (gateway only; see tenancy). */
  RATE_LIMITED: {
    httpStatus: 429,
    grpcStatus: status.RESOURCE_EXHAUSTED,
    openaiType: "rate_limit_error",
  },
  /** A valid key without the right: admin endpoints, another tenant's files and batches. */
  PERMISSION_DENIED: {
    httpStatus: 403,
    grpcStatus: status.PERMISSION_DENIED,
    openaiType: "invalid_request_error",
  },
  /** A guard blocked the input (KILN_GUARD). */
  CONTENT_FILTER: {
    httpStatus: 400,
    grpcStatus: status.INVALID_ARGUMENT,
    openaiType: "invalid_request_error",
  },
};

/** An error with a code from ERROR_TABLE and, for bad input, the offending parameter. */
export class KilnError extends Error {
  override readonly name = "KilnError";

  constructor(
    readonly code: KilnErrorCode,
    message: string,
    readonly param: string | null = null,
  ) {
    super(message);
  }
}

/**
 * Where several codes share a gRPC status, the general one is what a bare status means: a call
 * that failed with UNAVAILABLE says nothing about a worker, NOT_FOUND nothing about a model.
 */
const GENERAL_CODE_OF_STATUS: Partial<Record<status, KilnErrorCode>> = {
  [status.INVALID_ARGUMENT]: "INVALID_REQUEST",
  [status.NOT_FOUND]: "NOT_FOUND",
  [status.UNAVAILABLE]: "UNAVAILABLE",
};

/** The code a gRPC status maps back to, for errors that arrive from another process. */
export function codeFromGrpcStatus(grpcStatus: status): KilnErrorCode {
  const general = GENERAL_CODE_OF_STATUS[grpcStatus];
  if (general) return general;
  const entry = Object.entries(ERROR_TABLE).find(([, m]) => m.grpcStatus === grpcStatus);
  return (entry?.[0] as KilnErrorCode | undefined) ?? "INTERNAL";
}
