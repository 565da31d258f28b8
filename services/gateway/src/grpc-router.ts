import { credentials, Metadata, type ServiceError, status } from "@grpc/grpc-js";
import {
  codeFromGrpcStatus,
  ErrorCode,
  type GenerateEvent,
  type GenerateRequest,
  KilnError,
  type KilnErrorCode,
  RouterClient,
} from "@kiln/proto";
import { injectTraceContext } from "@kiln/telemetry";
import type { RouterPort } from "./router-port";

const HEALTH_DEADLINE_MS = 2000;

/**
 * A restarted router must be found again within about a second: grpc-js reconnects a channel
 * in TRANSIENT_FAILURE with exponential backoff (up to 120 s by default), and while it backs
 * off every call fails at once with UNAVAILABLE (503 + Retry-After to the client, never a hang).
 */
export const ROUTER_CHANNEL_OPTIONS = {
  "grpc.initial_reconnect_backoff_ms": 100,
  "grpc.max_reconnect_backoff_ms": 1000,
} as const;

const PROTO_TO_KILN: Readonly<Record<number, KilnErrorCode>> = {
  [ErrorCode.INVALID_REQUEST]: "INVALID_REQUEST",
  [ErrorCode.OVERLOADED]: "OVERLOADED",
  [ErrorCode.CANCELLED]: "CANCELLED",
  [ErrorCode.INTERNAL]: "INTERNAL",
  [ErrorCode.WORKER_LOST]: "WORKER_LOST",
  [ErrorCode.DEADLINE_EXCEEDED]: "DEADLINE_EXCEEDED",
};

/** A router error event as a KilnError. */
export function errorFromEvent(code: ErrorCode, message: string): KilnError {
  return new KilnError(PROTO_TO_KILN[code] ?? "INTERNAL", message || "router error");
}

/** A failed gRPC call as a KilnError; an unreachable router is UNAVAILABLE, not a 500. */
export function errorFromGrpc(err: unknown): KilnError {
  if (err instanceof KilnError) return err;
  const se = err as Partial<ServiceError>;
  if (typeof se.code !== "number") return new KilnError("INTERNAL", "router call failed");
  if (se.code === status.RESOURCE_EXHAUSTED)
    return new KilnError("OVERLOADED", "The server is overloaded; retry later.");
  if (se.code === status.UNAVAILABLE)
    return new KilnError("UNAVAILABLE", "The router is unavailable; retry later.");
  return new KilnError(codeFromGrpcStatus(se.code), se.details || "router call failed");
}

/** RouterPort over gRPC. Owns one channel to `address` (host:port); `close()` releases it. */
export function createGrpcRouter(address: string): RouterPort {
  const client = new RouterClient(address, credentials.createInsecure(), ROUTER_CHANNEL_OPTIONS);
  return {
    generate: (request, signal) => generateEvents(client, request, signal),
    isHealthy: () =>
      new Promise((resolve) => {
        const deadline = Date.now() + HEALTH_DEADLINE_MS;
        client.health({}, new Metadata(), { deadline }, (err, res) => resolve(!err && res.serving));
      }),
    close: () => client.close(),
  };
}

async function* generateEvents(
  client: RouterClient,
  request: GenerateRequest,
  signal: AbortSignal,
): AsyncGenerator<GenerateEvent> {
  if (signal.aborted) return;
  // The active context is the HTTP request's span (see observability/metrics-plugin.ts).
  const call = client.generate(request, injectTraceContext(new Metadata()));
  const onAbort = () => call.cancel();
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    for await (const event of call as AsyncIterable<GenerateEvent>) {
      if (event.error) throw errorFromEvent(event.error.code, event.error.message);
      yield event;
    }
  } catch (err) {
    if (signal.aborted) return;
    throw errorFromGrpc(err);
  } finally {
    signal.removeEventListener("abort", onAbort);
    // An early return by the consumer (stop string matched) must also end the router's work.
    call.cancel();
  }
}
