import { KilnError } from "@kiln/proto";
import type { FastifyInstance } from "fastify";
import type { GatewayDeps } from "../app";
import { sendError } from "../errors";

/** GET /v1/models, GET /v1/models/:model and GET /health. */
export function registerModelRoutes(app: FastifyInstance, deps: GatewayDeps): void {
  const card = () => ({
    id: deps.model.id,
    object: "model",
    created: deps.model.created,
    owned_by: "kiln",
    max_model_len: deps.model.contextLen,
  });
  // One list for both routes, so GET /v1/models/{id} finds exactly what /v1/models lists.
  const servedModels = () => [card()];
  app.get("/v1/models", async () => ({ object: "list", data: servedModels() }));
  app.get<{ Params: { model: string } }>("/v1/models/:model", async (request, reply) => {
    const found = servedModels().find((m) => m.id === request.params.model);
    if (found) return found;
    return sendError(
      reply,
      new KilnError(
        "MODEL_NOT_FOUND",
        `The model \`${request.params.model}\` does not exist.`,
        "model",
      ),
    );
  });
  // Healthy means requests can be served: the router answers and has a healthy worker group.
  app.get("/health", async (_request, reply) => {
    if (await deps.router.isHealthy()) return { status: "ok" };
    return sendError(reply, new KilnError("UNAVAILABLE", "The router has no healthy workers."));
  });
}
