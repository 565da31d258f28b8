import { KilnError } from "@kiln/proto";
import type { FastifyInstance } from "fastify";
import type { GatewayDeps } from "../app";
import { sendError } from "../errors";
import type { ServedAdapter } from "../lora/registry";

/** GET /v1/models, GET /v1/models/:model and GET /health. */
export function registerModelRoutes(app: FastifyInstance, deps: GatewayDeps): void {
  const card = () => ({
    id: deps.model.id,
    object: "model",
    created: deps.model.created,
    owned_by: "kiln",
    max_model_len: deps.model.contextLen,
  });
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
  app.get("/v1/models", async () => ({
    object: "list",
    data: [card(), ...(deps.lora?.list() ?? []).map(adapterCard)],
  }));
  app.get<{ Params: { model: string } }>("/v1/models/:model", async (request, reply) => {
    if (request.params.model === deps.model.id) return card();
    const adapter = deps.lora?.get(request.params.model);
    if (adapter !== undefined) return adapterCard(adapter);
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
