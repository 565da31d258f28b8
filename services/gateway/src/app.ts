import { KilnError } from "@kiln/proto";
import Fastify, { type FastifyInstance, type FastifyServerOptions } from "fastify";
import { installAdmission } from "./admission";
import { type BatchService, registerBatchApi } from "./batch";
import { installErrorHandlers } from "./errors";
import type { Guard } from "./guards";
import { InFlight } from "./in-flight";
import type { LoraRegistry } from "./lora/registry";
import type { ModelInfo } from "./model-info";
import { MemoryResponseStore, type ResponseStore } from "./responses/store";
import type { RouterPort } from "./router-port";
import { registerChatRoute } from "./routes/chat";
import { registerCompletionsRoute } from "./routes/completions";
import { type EmbeddingConfig, registerEmbeddingsRoute } from "./routes/embeddings";
import { registerLoraAdminRoutes } from "./routes/lora-admin";
import { registerModelRoutes } from "./routes/models";
import { registerResponsesRoutes } from "./routes/responses";
import { registerUtilityRoutes } from "./routes/utility";
import { DEFAULT_MAX_STREAM_BUFFER_BYTES, installStreamLimits } from "./sse";
import type { ToolCallParser } from "./structured/tool-parsers";
import { KeySource, type TenancyOptions, tenancyPlugin } from "./tenancy";
import type { TextCodec } from "./text-codec";

/** Default request body limit: room for a long prompt, small enough to refuse abuse (413). */
export const DEFAULT_BODY_LIMIT_BYTES = 4 * 1024 * 1024;

/** Default bound on generation requests in flight at once (docs/operations.md, "Limits"). */
export const DEFAULT_MAX_CONCURRENT_REQUESTS = 4096;

/** What the routes use. buildApp's caller owns `router` and closes it after the app. */
export interface GatewayDeps {
  readonly model: ModelInfo;
  readonly codec: TextCodec;
  readonly router: RouterPort;
  /** Accepted API keys, or null when authentication is off. */
  readonly apiKeys: readonly string[] | null;
  /** Running generations; main aborts them all when draining times out. */
  readonly inFlight: InFlight;
  /** Keys file, audit log and tenant metrics; default: `apiKeys` as admin keys, no audit. */
  readonly tenancy?: TenancyOptions;
  /** KILN_GUARD: judges inputs and outputs; null or absent: no guard. */
  readonly guard?: Guard | null;
  /** Stored Responses API responses; an in-memory store with default limits when absent. */
  readonly responseStore?: ResponseStore;
  /** Set when the model is served for embeddings (KILN_TASK=embed); null or absent otherwise. */
  readonly embedding?: EmbeddingConfig | null;
  /** LoRA adapters served by name (ADR 0015); absent: the base model only. */
  readonly lora?: LoraRegistry;
  /** KILN_ALLOW_RUNTIME_LORA_UPDATING: POST /v1/load_lora_adapter and unload exist. */
  readonly allowRuntimeLoraUpdating?: boolean;
  /** The Batch and Files APIs; null or absent: their endpoints answer 503 (no Redis). */
  readonly batch?: BatchService | null;
  /** KILN_TOOL_CALL_PARSER: how tool calls are written and parsed (ADR 0016); hermes when absent. */
  readonly toolCallParser?: ToolCallParser;
}

export interface AppOptions {
  readonly bodyLimit?: number;
  /** Generation requests in flight at once; more get 429 (KILN_MAX_CONCURRENT_REQUESTS). */
  readonly maxConcurrentRequests?: number;
  /** Unsent bytes one SSE client may have queued before it is cut off (KILN_MAX_STREAM_BUFFER_BYTES). */
  readonly maxStreamBufferBytes?: number;
  readonly logger?: FastifyServerOptions["logger"];
}

/** The gateway's HTTP app, not yet listening (tests call `inject()` on it). */
export function buildApp(
  deps: Omit<GatewayDeps, "inFlight"> & { inFlight?: InFlight },
  opts: AppOptions = {},
): FastifyInstance {
  const fullDeps: GatewayDeps = { ...deps, inFlight: deps.inFlight ?? new InFlight() };
  const bodyLimit = opts.bodyLimit ?? DEFAULT_BODY_LIMIT_BYTES;
  const app = Fastify({
    bodyLimit,
    logger: opts.logger ?? false,
    // New requests during drain get an OpenAI-shaped 503 from the hook below instead.
    return503OnClosing: false,
  });
  installErrorHandlers(app);
  installJsonParser(app, bodyLimit);
  let isClosing = false;
  app.addHook("preClose", async () => {
    isClosing = true;
  });
  app.addHook("onRequest", async () => {
    if (isClosing) throw new KilnError("UNAVAILABLE", "The server is shutting down.");
  });
  void app.register(tenancyPlugin(fullDeps.tenancy ?? defaultTenancy(fullDeps.apiKeys)));
  installAdmission(app, opts.maxConcurrentRequests ?? DEFAULT_MAX_CONCURRENT_REQUESTS);
  installStreamLimits(app, opts.maxStreamBufferBytes ?? DEFAULT_MAX_STREAM_BUFFER_BYTES);
  registerModelRoutes(app, fullDeps);
  registerChatRoute(app, fullDeps);
  registerCompletionsRoute(app, fullDeps);
  registerResponsesRoutes(app, fullDeps, fullDeps.responseStore ?? new MemoryResponseStore());
  registerUtilityRoutes(app, fullDeps);
  registerEmbeddingsRoute(app, fullDeps);
  if (fullDeps.lora && fullDeps.allowRuntimeLoraUpdating)
    registerLoraAdminRoutes(app, fullDeps.lora);
  registerBatchApi(app, fullDeps.batch ?? null);
  return app;
}

function defaultTenancy(apiKeys: readonly string[] | null): TenancyOptions {
  const keys = apiKeys
    ? new KeySource({ keysFile: null, plainKeys: apiKeys, log: () => {} })
    : null;
  return { keys, audit: null, registry: null };
}

/**
 * Every body is parsed as JSON whatever its content type (curl's `-d` sends form encoding);
 * anything else is a 400 with OpenAI's wording.
 */
function installJsonParser(app: FastifyInstance, bodyLimit: number): void {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", { parseAs: "string", bodyLimit }, (_request, body, done) => {
    const text = String(body);
    if (text.trim() === "") {
      done(null, undefined);
      return;
    }
    try {
      done(null, JSON.parse(text));
    } catch {
      done(
        new KilnError(
          "INVALID_REQUEST",
          "We could not parse the JSON body of your request. The body must be valid JSON.",
        ),
        undefined,
      );
    }
  });
}
