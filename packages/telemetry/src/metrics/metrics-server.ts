import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Registry } from "prom-client";

/** A running `/metrics` endpoint. */
export interface MetricsServer {
  /** The bound port (the OS picks one when asked for 0). */
  readonly port: number;
  /** Stops accepting scrapes; resolves once the socket is closed. */
  close(): Promise<void>;
}

/**
 * Serves `GET /metrics` (Prometheus text format) from `registry` on its own port, for services
 * that have no HTTP server of their own (router, worker). Any other path is a 404.
 */
export async function startMetricsServer(
  registry: Registry,
  opts: { readonly host: string; readonly port: number },
): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET" || path !== "/metrics") {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { "content-type": registry.contentType }).end(text),
      (err: unknown) =>
        res.writeHead(500, { "content-type": "text/plain" }).end(`${String(err)}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  // Scrapes are short; an idle keep-alive socket must not hold shutdown open.
  server.keepAliveTimeout = 1000;
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The metrics options a process accepts, taken out of its argv before its own parsing. */
export interface MetricsPortOption {
  /** Port for `/metrics` (0: any free one), or null when metrics are not served. */
  readonly metricsPort: number | null;
  /** argv without `--metrics-port`. */
  readonly argv: string[];
}

/**
 * Takes `--metrics-port N` (or `--metrics-port=N`) out of `argv`; falls back to the service's
 * own variable (`serviceEnvName`, e.g. `KILN_ROUTER_METRICS_PORT`, so one environment can give
 * router and worker different ports under `npm start`), then to `KILN_METRICS_PORT`. Throws
 * naming the flag when the value is not a port number.
 */
export function takeMetricsPortOption(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
  serviceEnvName?: string,
): MetricsPortOption {
  const rest: string[] = [];
  let text: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--metrics-port") {
      text = argv[++i];
      if (text === undefined) throw new Error("--metrics-port: expected a port number");
    } else if (arg.startsWith("--metrics-port=")) {
      text = arg.slice("--metrics-port=".length);
    } else {
      rest.push(arg);
    }
  }
  text ??= (serviceEnvName ? env[serviceEnvName] : undefined) || env.KILN_METRICS_PORT;
  if (text === undefined || text === "") return { metricsPort: null, argv: rest };
  const port = Number(text);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`--metrics-port: expected a port number (0 for any), got "${text}"`);
  }
  return { metricsPort: port, argv: rest };
}
