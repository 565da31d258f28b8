/**
 * The gateway process: the OpenAI-compatible HTTP edge in front of one router. Prints one JSON
 * line `{"event":"listening","port":N}` on stdout once it accepts requests. SIGINT/SIGTERM
 * drain: new requests get 503, running ones may finish within the drain timeout, then the
 * rest are aborted and the process exits.
 */

import { createWriteStream } from "node:fs";
import { loadConfig, loadGenerationConfig, loadTokenizer, resolveModelDir } from "@kiln/model";
import { createMetricsRegistry } from "@kiln/telemetry";
import { buildApp } from "./app";
import { type BatchConfig, BatchService, FileStore, parseBatchConfig } from "./batch";
import { createGrpcRouter } from "./grpc-router";
import { combineGuards, type Guard, LlmGuard, RulesGuard } from "./guards";
import { InFlight } from "./in-flight";
import { LoraRegistry } from "./lora/registry";
import { createModelCodec } from "./model-codec";
import { modelPooling } from "./model-pooling";
import { installObservability } from "./observability";
import { type GatewayOptions, parseGatewayOptions } from "./options";
import { createResponseStore } from "./responses/create-store";
import type { RouterPort } from "./router-port";
import { toolCallParser } from "./structured/tool-parsers";
import { KeySource } from "./tenancy";
import type { TextCodec } from "./text-codec";

/**
 * Pending connections the kernel queues before the gateway accepts them. Node's default (511)
 * overflows under a burst of thousands of clients, and the overflow shows up as connection
 * resets. Linux caps it at net.core.somaxconn (4096 on current kernels).
 */
const LISTEN_BACKLOG = 4096;

async function main(): Promise<void> {
  const opts = parseGatewayOptions(process.argv.slice(2), process.env);
  const modelDir = await resolveModelDir(opts.model);
  const [config, defaults, tokenizer] = await Promise.all([
    loadConfig(modelDir),
    loadGenerationConfig(modelDir),
    loadTokenizer(modelDir),
  ]);
  const lora = new LoraRegistry(opts.servedModelName, config, opts.maxLoraRank);
  for (const { name, path } of opts.loraModules) await lora.load(name, path);
  const batch = createBatchService(parseBatchConfig(process.argv.slice(2), process.env));
  const router = createGrpcRouter(opts.routerAddress);
  const codec = createModelCodec(tokenizer);
  const inFlight = new InFlight(opts.requestTimeoutMs);
  const registry = createMetricsRegistry();
  const keys =
    opts.apiKeysFile || opts.apiKeys
      ? new KeySource({ keysFile: opts.apiKeysFile, plainKeys: opts.apiKeys, log })
      : null;
  const responseStore = createResponseStore(opts);
  const app = buildApp(
    {
      model: {
        id: opts.servedModelName,
        created: Math.floor(Date.now() / 1000),
        contextLen: config.maxPositionEmbeddings,
        vocabSize: config.vocabSize,
        defaults,
      },
      codec,
      router,
      guard: buildGuard(opts, router, codec),
      apiKeys: opts.apiKeys,
      inFlight,
      tenancy: { keys, audit: openAuditLog(opts.auditLog), registry },
      responseStore,
      embedding:
        opts.task === "embed"
          ? {
              pooling: opts.pooling ?? (await modelPooling(modelDir)) ?? "last",
              isNormalized: opts.isEmbeddingNormalized,
              hiddenSize: config.hiddenSize,
            }
          : null,
      lora,
      allowRuntimeLoraUpdating: opts.allowRuntimeLoraUpdating,
      toolCallParser: toolCallParser(opts.toolCallParser),
      batch,
    },
    {
      logger: { level: opts.logLevel },
      ...(opts.bodyLimitBytes ? { bodyLimit: opts.bodyLimitBytes } : {}),
      ...(opts.maxConcurrentRequests ? { maxConcurrentRequests: opts.maxConcurrentRequests } : {}),
      ...(opts.maxStreamBufferBytes ? { maxStreamBufferBytes: opts.maxStreamBufferBytes } : {}),
    },
  );
  const { routerAddress, servedModelName: model } = opts;
  batch?.registerMetrics(registry);
  const observability = await installObservability(app, {
    routerAddress,
    model,
    registry,
    lora,
    metricsUpstreams: opts.metricsUpstreams,
  });
  await app.listen({ host: opts.host, port: opts.port, backlog: LISTEN_BACKLOG });
  const address = app.server.address();
  const port = typeof address === "object" && address ? address.port : opts.port;
  await batch?.start(app);
  process.stdout.write(`${JSON.stringify({ event: "listening", port, host: opts.host })}\n`);
  installDrain(opts, inFlight, async () => {
    await batch?.close();
    await app.close();
    router.close();
    keys?.close();
    await responseStore.close();
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

/** KILN_GUARD's guards, in order (rules first: cheap), or null. Throws for a bad rules file. */
function buildGuard(opts: GatewayOptions, router: RouterPort, codec: TextCodec): Guard | null {
  const guards: Guard[] = [];
  if (opts.guards.includes("rules")) {
    if (!opts.guardRulesFile)
      throw new Error("--guard rules needs --guard-rules-file (KILN_GUARD_RULES_FILE)");
    guards.push(RulesGuard.fromFile(opts.guardRulesFile));
  }
  if (opts.guards.includes("llm")) {
    const pattern = opts.guardUnsafePattern;
    guards.push(
      new LlmGuard({
        router,
        codec,
        template: opts.guardTemplate,
        ...(pattern ? { unsafePattern: new RegExp(pattern, "i") } : {}),
      }),
    );
  }
  return combineGuards(guards);
}

/** Where audit lines go: "stdout", "stderr" or a file (appended); null: nowhere. */
function openAuditLog(target: string | null): ((line: string) => void) | null {
  if (target === null) return null;
  if (target === "stdout") return (line) => process.stdout.write(`${line}\n`);
  if (target === "stderr") return (line) => process.stderr.write(`${line}\n`);
  const stream = createWriteStream(target, { flags: "a" });
  return (line) => stream.write(`${line}\n`);
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
