import { KilnError } from "@kiln/proto";
import Fastify, { type FastifyInstance, type FastifyServerOptions } from "fastify";
import { installAuth } from "./auth";
import { type BatchService, registerBatchApi } from "./batch";
import { installErrorHandlers } from "./errors";
import { InFlight } from "./in-flight";
import type { ModelInfo } from "./model-info";
import type { RouterPort } from "./router-port";
import { registerChatRoute } from "./routes/chat";
import { registerCompletionsRoute } from "./routes/completions";
import { registerModelRoutes } from "./routes/models";
import type { TextCodec } from "./text-codec";

/** Default request body limit: room for a long prompt, small enough to refuse abuse (413). */
export const DEFAULT_BODY_LIMIT_BYTES = 4 * 1024 * 1024;

/** What the routes use. buildApp's caller owns `router` and closes it after the app. */
export interface GatewayDeps {
  readonly model: ModelInfo;
  readonly codec: TextCodec;
  readonly router: RouterPort;
  /** Accepted API keys, or null when authentication is off. */
  readonly apiKeys: readonly string[] | null;
  /** Running generations; main aborts them all when draining times out. */
  readonly inFlight: InFlight;
  /** The Batch and Files APIs; null or absent: their endpoints answer 503 (no Redis). */
  readonly batch?: BatchService | null;
}

export interface AppOptions {
  readonly bodyLimit?: number;
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
  installAuth(app, fullDeps.apiKeys);
  registerModelRoutes(app, fullDeps);
  registerChatRoute(app, fullDeps);
  registerCompletionsRoute(app, fullDeps);
  registerBatchApi(app, fullDeps.batch ?? null);
  return app;
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
