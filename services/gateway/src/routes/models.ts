import { KilnError } from "@kiln/proto";
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { GatewayDeps } from "../app";
import { sendError } from "../errors";
import type { ServedAdapter } from "../lora/registry";
import { isModelAllowed } from "../tenancy";

/** GET /v1/models, GET /v1/models/:model and GET /health. */
export function registerModelRoutes(app: FastifyInstance, deps: GatewayDeps): void {
  const card = () => ({
    id: deps.model.id,
    object: "model",
    created: deps.model.created,
    owned_by: "kiln",
    max_model_len: deps.model.contextLen,
  });
  // A model the caller's tenant may not use is listed nowhere and looks missing (tenancy).
  const isVisible = (request: FastifyRequest, id: string) => {
    const tenant = request.kilnTenant;
    return !tenant || tenant.isAdmin || isModelAllowed(tenant.config, id);
  };
  // LoRA adapters are listed as models whose parent is the base model (as vLLM does).
  const adapterCard = (a: ServedAdapter) => ({
    id: a.name,
    object: "model",
    created: a.created,
    owned_by: "kiln",
    root: a.path,
    parent: deps.model.id,
    max_model_len: deps.model.contextLen,
  });
  // One list for both routes, so GET /v1/models/{id} finds exactly what /v1/models lists.
  const servedModels = (request: FastifyRequest) =>
    [card(), ...(deps.lora?.list() ?? []).map(adapterCard)].filter((m) => isVisible(request, m.id));
  app.get("/v1/models", async (request) => ({ object: "list", data: servedModels(request) }));
  app.get<{ Params: { model: string } }>("/v1/models/:model", async (request, reply) => {
    const found = servedModels(request).find((m) => m.id === request.params.model);
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
