import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { HTTP_BUCKETS_S } from "./buckets";

type HttpLabel = "method" | "route" | "status_code";

/**
 * The gateway's HTTP metrics: `kiln_http_requests_total` and
 * `kiln_http_request_duration_seconds` by method, route template and status code,
 * `kiln_http_requests_in_flight`, and `kiln_request_errors_total{code}` by Kiln error code
 * (what the client was told). The caller owns the registry.
 */
export class HttpMetrics {
  readonly requests: Counter<HttpLabel>;
  readonly duration: Histogram<HttpLabel>;
  readonly inFlight: Gauge;
  readonly errors: Counter<"code">;

  /** `errorCodes` are created at zero so an error ratio reads 0, not "no data", when healthy. */
  constructor(registry: Registry, errorCodes: readonly string[] = []) {
    const registers = [registry];
    const labelNames = ["method", "route", "status_code"] as const;
    this.requests = new Counter({
      name: "kiln_http_requests_total",
      help: "HTTP requests answered, by method, route template and status code.",
      labelNames,
      registers,
    });
    this.duration = new Histogram({
      name: "kiln_http_request_duration_seconds",
      help: "HTTP request duration until the response ended (a stream's whole length).",
      labelNames,
      buckets: HTTP_BUCKETS_S,
      registers,
    });
    this.inFlight = new Gauge({
      name: "kiln_http_requests_in_flight",
      help: "HTTP requests being answered.",
      registers,
    });
    this.errors = new Counter({
      name: "kiln_request_errors_total",
      help: "Requests that ended with an error, by Kiln error code.",
      labelNames: ["code"],
      registers,
    });
    for (const code of errorCodes) this.errors.inc({ code }, 0);
  }

  /** Records one answered request; `route` is the template (`/v1/chat/completions`), never the raw URL. */
  observe(method: string, route: string, statusCode: number, durationS: number): void {
    const labels = { method, route, status_code: String(statusCode) };
    this.requests.inc(labels);
    this.duration.observe(labels, durationS);
  }
}
