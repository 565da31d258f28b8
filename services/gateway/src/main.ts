/**
 * The gateway process: the OpenAI-compatible HTTP edge in front of one router. Prints one JSON
 * line `{"event":"listening","port":N}` on stdout once it accepts requests. SIGINT/SIGTERM
 * drain: new requests get 503, running ones may finish within the drain timeout, then the
 * rest are aborted and the process exits.
 */
import { loadConfig, loadGenerationConfig, loadTokenizer, resolveModelDir } from "@kiln/model";
import { createMetricsRegistry } from "@kiln/telemetry";
import { buildApp } from "./app";
import { type BatchConfig, BatchService, FileStore, parseBatchConfig } from "./batch";
import { createGrpcRouter } from "./grpc-router";
import { InFlight } from "./in-flight";
import { createModelCodec } from "./model-codec";
import { installObservability } from "./observability";
import { type GatewayOptions, parseGatewayOptions } from "./options";

async function main(): Promise<void> {
  const opts = parseGatewayOptions(process.argv.slice(2), process.env);
  const modelDir = await resolveModelDir(opts.model);
  const [config, defaults, tokenizer] = await Promise.all([
    loadConfig(modelDir),
    loadGenerationConfig(modelDir),
    loadTokenizer(modelDir),
  ]);
  const batch = createBatchService(parseBatchConfig(process.argv.slice(2), process.env));
  const router = createGrpcRouter(opts.routerAddress);
  const inFlight = new InFlight();
  const app = buildApp(
    {
      model: {
        id: opts.servedModelName,
        created: Math.floor(Date.now() / 1000),
        contextLen: config.maxPositionEmbeddings,
        vocabSize: config.vocabSize,
        defaults,
      },
      codec: createModelCodec(tokenizer),
      router,
      apiKeys: opts.apiKeys,
      inFlight,
      batch,
    },
    {
      logger: { level: opts.logLevel },
      ...(opts.bodyLimitBytes ? { bodyLimit: opts.bodyLimitBytes } : {}),
    },
  );
  const { routerAddress, servedModelName: model } = opts;
  const registry = createMetricsRegistry();
  batch?.registerMetrics(registry);
  const observability = await installObservability(app, { routerAddress, model, registry });
  await app.listen({ host: opts.host, port: opts.port });
  const address = app.server.address();
  const port = typeof address === "object" && address ? address.port : opts.port;
  await batch?.start(app);
  process.stdout.write(`${JSON.stringify({ event: "listening", port, host: opts.host })}\n`);
  installDrain(opts, inFlight, async () => {
    await batch?.close();
    await app.close();
    router.close();
    await observability.close();
  });
}

/** First signal: drain (abort what is left after the timeout). Second signal: abort now. */
function installDrain(opts: GatewayOptions, inFlight: InFlight, close: () => Promise<void>) {
  let isDraining = false;
  const onSignal = (signal: string) => {
    if (isDraining) {
      inFlight.abortAll();
      return;
    }
    isDraining = true;
    log(`${signal}: draining ${inFlight.numActive} request(s), up to ${opts.drainTimeoutMs} ms`);
    const timer = setTimeout(() => {
      log(`drain timeout: aborting ${inFlight.numActive} request(s)`);
      inFlight.abortAll();
    }, opts.drainTimeoutMs);
    close()
      .catch((err: unknown) => log(`close failed: ${String(err)}`))
      .finally(() => {
        clearTimeout(timer);
        log("stopped");
        process.exit(0);
      });
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
}

/** The batch service when Redis is configured; otherwise null (batch and file routes: 503). */
function createBatchService(config: BatchConfig): BatchService | null {
  const { redisUrl } = config;
  if (redisUrl === null) {
    log("no KILN_REDIS_URL: the Batch and Files APIs are off (503)");
    return null;
  }
  return new BatchService({ ...config, redisUrl }, new FileStore(config.dataDir), log);
}

function log(message: string): void {
  process.stderr.write(`kiln gateway: ${message}\n`);
}

main().catch((err: unknown) => {
  log(err instanceof Error ? err.message : String(err));
  process.exit(1);
});
