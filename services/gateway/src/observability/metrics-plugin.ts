import { ERROR_TABLE, type KilnErrorCode } from "@kiln/proto";
import {
  context,
  createMetricsRegistry,
  extractHttpTraceContext,
  getTracer,
  HttpMetrics,
  isTracingEnabled,
  type Registry,
  type ReplicaSnapshot,
  SchedulerMetrics,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
} from "@kiln/telemetry";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { fetchUpstreams, mergeExpositions } from "./upstream-metrics";

export interface ObservabilityOptions {
  /** Where metrics are registered; default a new registry with Node process metrics. */
  readonly registry?: Registry;
  /**
   * The router's scheduler state, read at each scrape and exposed as `kiln_num_requests_*`,
   * `kiln_kv_cache_usage_ratio`, `kiln_prefix_cache_*` and `kiln_num_preemptions_total`
   * (see router-stats.ts). Null: the gateway exposes only its own metrics.
   */
  readonly readRouterStats?: (() => Promise<readonly ReplicaSnapshot[]>) | null;
  /**
   * Other processes' `/metrics` URLs whose `kiln_*` families `/metrics` appends (see
   * upstream-metrics.ts); empty or absent: the gateway's own metrics only.
   */
  readonly metricsUpstreams?: readonly string[];
}

/** What the plugin keeps per request, on the request object. */
interface RequestState {
  readonly startNs: bigint;
  readonly span: Span | null;
  errorCode: string | null;
}

const STATE = Symbol("kiln.observability");
type ObservedRequest = FastifyRequest & { [STATE]?: RequestState };
const tracer = getTracer("kiln-gateway");

/**
 * Records the code of an error the client received inside a 200 stream (an SSE error event),
 * which the plugin cannot see in the status code. Errors answered with their own status are
 * counted without this.
 */
export function recordStreamError(request: FastifyRequest, code: KilnErrorCode): void {
  const state = (request as ObservedRequest)[STATE];
  if (state) state.errorCode = code;
}

/**
 * The gateway's observability as a fastify plugin (registered at the root, so it sees every
 * route, including those registered before it):
 * - `GET /metrics` in Prometheus text format;
 * - `kiln_http_requests_total` / `kiln_http_request_duration_seconds` per method, route
 *   template and status; `kiln_http_requests_in_flight`;
 * - `kiln_request_errors_total{code}` from error responses (a client that leaves early is
 *   CANCELLED; stream errors come through `recordStreamError`);
 * - while tracing, a SERVER span per request (continuing a client's `traceparent`) that is the
 *   active context in the handler, so the router's Generate call can carry it.
 */
export function observabilityPlugin(opts: ObservabilityOptions) {
  const registry = opts.registry ?? createMetricsRegistry();
  const http = new HttpMetrics(registry, Object.keys(ERROR_TABLE));
  const readStats = opts.readRouterStats;
  if (readStats) new SchedulerMetrics(registry, readStats);

  const plugin = async (app: FastifyInstance) => {
    const upstreams = opts.metricsUpstreams ?? [];
    app.get("/metrics", async (_request, reply) => {
      const own = await registry.metrics();
      const text =
        upstreams.length === 0 ? own : mergeExpositions(own, await fetchUpstreams(upstreams));
      return reply.type(registry.contentType).send(text);
    });
    app.addHook("onRequest", async (request, reply) => {
      if (request.routeOptions.url === "/metrics") return;
      startObserving(request as ObservedRequest, reply, http);
    });
    app.addHook("preHandler", (request, _reply, done) => {
      const span = (request as ObservedRequest)[STATE]?.span;
      // The handler runs inside `done`: everything it awaits sees the span as active.
      if (span) context.with(trace.setSpan(context.active(), span), done);
      else done();
    });
    app.addHook("onSend", async (request, reply, payload) => {
      const observed = request as ObservedRequest;
      // An onRequest hook that threw before ours (auth, drain) skipped it: observe from here.
      if (!observed[STATE] && request.routeOptions.url !== "/metrics") {
        startObserving(observed, reply, http, reply.elapsedTime);
      }
      const state = observed[STATE];
      if (state && reply.statusCode >= 400) state.errorCode ??= errorCodeOf(payload);
      return payload;
    });
  };
  // fastify-plugin's marker: run in the root context rather than an encapsulated child.
  Object.assign(plugin, { [Symbol.for("skip-override")]: true });
  return plugin;
}

function startObserving(
  request: ObservedRequest,
  reply: FastifyReply,
  http: HttpMetrics,
  elapsedMs = 0,
): void {
  const route = request.routeOptions.url ?? "unmatched";
  const span = isTracingEnabled()
    ? tracer.startSpan(
        `${request.method} ${route}`,
        {
          kind: SpanKind.SERVER,
          attributes: {
            "http.request.method": request.method,
            "http.route": route,
            "url.path": request.url.split("?")[0] ?? "",
          },
        },
        extractHttpTraceContext(request.headers),
      )
    : null;
  const startNs = process.hrtime.bigint() - BigInt(Math.round(elapsedMs * 1e6));
  const state: RequestState = { startNs, span, errorCode: null };
  request[STATE] = state;
  http.inFlight.inc();
  let isFinished = false;
  reply.raw.once("finish", () => {
    isFinished = true;
  });
  // 'close' fires once in every case: finished, hijacked stream ended, or client gone.
  reply.raw.once("close", () => {
    http.inFlight.dec();
    const isAborted = !(isFinished || reply.raw.writableFinished);
    const status = isAborted ? ERROR_TABLE.CANCELLED.httpStatus : reply.raw.statusCode;
    const code = state.errorCode ?? (isAborted ? "CANCELLED" : null);
    if (code) http.errors.inc({ code });
    http.observe(
      request.method,
      route,
      status,
      Number(process.hrtime.bigint() - state.startNs) / 1e9,
    );
    if (span) {
      span.setAttribute("http.response.status_code", status);
      if (code) span.setAttribute("kiln.error_code", code);
      if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
      span.end();
    }
  });
}

/** The Kiln code of an OpenAI error body (`{"error":{"code":"worker_lost"}}`), if any. */
function errorCodeOf(payload: unknown): string | null {
  if (typeof payload !== "string") return null;
  try {
    const code = (JSON.parse(payload) as { error?: { code?: unknown } }).error?.code;
    return typeof code === "string" ? code.toUpperCase() : null;
  } catch {
    return null;
  }
}
