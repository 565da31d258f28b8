import {
  type ClientReadableStream,
  credentials,
  Metadata,
  type ServiceError,
  status,
} from "@grpc/grpc-js";
import {
  codeFromGrpcStatus,
  ErrorCode,
  type GenerateEvent,
  type GenerateRequest,
  KilnError,
  type KilnErrorCode,
  ROUTER_LINK_OPTIONS,
  RouterClient,
} from "@kiln/proto";
import { injectTraceContext } from "@kiln/telemetry";
import { deadlineErrorOf, deadlineOf } from "./in-flight";
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
export function createGrpcRouter(
  address: string,
  opts: { readonly abortGraceMs?: number } = {},
): RouterPort {
  const abortGraceMs = opts.abortGraceMs ?? DEFAULT_ABORT_GRACE_MS;
  const client = new RouterClient(address, credentials.createInsecure(), {
    ...ROUTER_LINK_OPTIONS,
    ...ROUTER_CHANNEL_OPTIONS,
  });
  return {
    generate: (request, signal) => generateEvents(client, request, signal, abortGraceMs),
    stopChoice: (requestId, index) =>
      new Promise((resolve) => {
        const deadline = Date.now() + HEALTH_DEADLINE_MS;
        const request = { requestId, index, isStop: true };
        client.abort(request, new Metadata(), { deadline }, () => resolve());
      }),
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
  abortGraceMs: number,
): AsyncGenerator<GenerateEvent> {
  if (signal.aborted) return;
  // The active context is the HTTP request's span (see observability/metrics-plugin.ts).
  // The request's deadline (KILN_REQUEST_TIMEOUT_S) travels with the call: the router aborts
  // the request, freeing its blocks, when it passes.
  const deadline = deadlineOf(signal);
  const call = client.generate(request, injectTraceContext(new Metadata()), { deadline });
  const stop = stopperFor(client, call, request.requestId, abortGraceMs);
  signal.addEventListener("abort", stop, { once: true });
  try {
    // Not destroyed on an early return: the stopper drains what the router still sends, so
    // the stream can end normally instead of being reset.
    const events = call.iterator({ destroyOnReturn: false }) as AsyncIterable<GenerateEvent>;
    for await (const event of events) {
      if (event.error) throw errorFromEvent(event.error.code, event.error.message);
      yield event;
    }
  } catch (err) {
    if (signal.aborted) return;
    // The call carries the request's own deadline: whichever side notices it first, the client
    // gets the request timeout's error.
    const isDeadline =
      (err as Partial<ServiceError>).code === status.DEADLINE_EXCEEDED ||
      (err instanceof KilnError && err.code === "DEADLINE_EXCEEDED");
    throw (isDeadline ? deadlineErrorOf(signal) : undefined) ?? errorFromGrpc(err);
  } finally {
    signal.removeEventListener("abort", stop);
    // An early return by the consumer (stop string matched, client gone) must also end the
    // router's work; stopping a call that already ended does nothing.
    stop();
  }
}

/**
 * How long the router has to end an aborted stream itself before the call is cancelled. Long,
 * on purpose: a router that is alive but busy (event-loop lag of seconds under a flood) must not
 * be answered with a burst of resets, and a dead one ends the call by itself (UNAVAILABLE).
 */
export const DEFAULT_ABORT_GRACE_MS = 30_000;

/**
 * Ends a Generate call that is no longer wanted without resetting its HTTP/2 stream.
 *
 * Cancelling a call sends RST_STREAM. Every Generate stream shares one HTTP/2 session, and the
 * router's nghttp2 treats a burst of more than about 1,000 resets (then 33 per second) as the
 * "rapid reset" attack (CVE-2023-44487): it closes the whole session with GOAWAY
 * INTERNAL_ERROR, and every healthy stream on it fails ("Session closed with error code 2").
 * A flood of disconnecting clients did exactly that. So the gateway asks the router to abort
 * the request (the Abort RPC); the router then ends the stream normally, and its remaining
 * events are drained and dropped. Only a stream the router has not ended within
 * `abortGraceMs` gets the RST. Idempotent.
 */
function stopperFor(
  client: RouterClient,
  call: ClientReadableStream<GenerateEvent>,
  requestId: string,
  abortGraceMs: number,
): () => void {
  let hasEnded = false;
  let isStopping = false;
  call.once("status", () => {
    hasEnded = true;
  });
  return () => {
    if (hasEnded || isStopping) return;
    isStopping = true;
    call.on("data", () => {});
    call.on("error", () => {});
    const grace = setTimeout(() => {
      if (!hasEnded) call.cancel();
    }, abortGraceMs);
    grace.unref();
    call.once("status", () => clearTimeout(grace));
    if (!requestId) {
      call.cancel();
      return;
    }
    // A failed Abort (router busy or gone) is left to the grace timer or to the call's own end.
    const request = { requestId, isStop: false };
    client.abort(request, new Metadata(), { deadline: Date.now() + abortGraceMs }, () => {});
  };
}
