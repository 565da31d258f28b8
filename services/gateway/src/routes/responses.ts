import { KilnError } from "@kiln/proto";
import type { FastifyInstance } from "fastify";
import type { GatewayDeps } from "../app";
import { prepareResponse } from "../responses/prepare";
import { type BackgroundRun, runInBackground, runStreamed, runToEnd } from "../responses/run";
import type { ResponseStore } from "../responses/store";
import { parseResponsesBody } from "../schemas/responses";

type IdParams = { Params: { id: string } };

/**
 * The Responses API: POST /v1/responses, GET and DELETE /v1/responses/{id},
 * POST /v1/responses/{id}/cancel and GET /v1/responses/{id}/input_items. Generation goes
 * through the same path as chat (generateChoices); see docs/api.md for what is supported.
 */
export function registerResponsesRoutes(
  app: FastifyInstance,
  deps: GatewayDeps,
  store: ResponseStore,
): void {
  const background = new Map<string, BackgroundRun>();
  app.addHook("onClose", async () => {
    for (const run of background.values()) run.abort();
    await Promise.all([...background.values()].map((r) => r.finished.catch(() => {})));
  });

  app.post("/v1/responses", async (request, reply) => {
    const parsed = parseResponsesBody(request.body);
    const prepared = await prepareResponse(deps, store, parsed);
    const { body } = parsed;
    if (body.background) {
      const queued = structuredClone(prepared.response);
      const run = await runInBackground(deps, store, prepared);
      const id = prepared.response.id;
      background.set(id, run);
      void run.finished
        .catch((err: unknown) => request.log.error({ err }, "background response failed"))
        .finally(() => background.delete(id));
      return queued;
    }
    const { signal, done } = deps.inFlight.open(reply);
    try {
      if (body.stream) {
        await runStreamed(deps, store, prepared, reply, signal);
        return;
      }
      return await runToEnd(deps, store, prepared, signal);
    } finally {
      done();
    }
  });

  app.get<IdParams>("/v1/responses/:id", async (request) => {
    return (await getOr404(store, request.params.id)).response;
  });

  app.get<IdParams>("/v1/responses/:id/input_items", async (request) => {
    const { inputItems } = await getOr404(store, request.params.id);
    const data = [...inputItems].reverse();
    const idOf = (item: unknown) => (item as { id?: string } | undefined)?.id ?? null;
    return {
      object: "list",
      data,
      first_id: idOf(data[0]),
      last_id: idOf(data.at(-1)),
      has_more: false,
    };
  });

  app.delete<IdParams>("/v1/responses/:id", async (request) => {
    const { id } = request.params;
    background.get(id)?.abort();
    if (!(await store.delete(id))) throw notFound(id);
    return { id, object: "response", deleted: true };
  });

  app.post<IdParams>("/v1/responses/:id/cancel", async (request) => {
    const { id } = request.params;
    const record = await getOr404(store, id);
    if (!record.response.background) {
      throw new KilnError(
        "INVALID_REQUEST",
        "Only responses created with background=true can be cancelled.",
      );
    }
    const run = background.get(id);
    if (run) {
      run.abort();
      await run.finished.catch(() => {});
    }
    return (await getOr404(store, id)).response;
  });
}

function notFound(id: string): KilnError {
  return new KilnError("NOT_FOUND", `Response with id '${id}' not found.`);
}

async function getOr404(store: ResponseStore, id: string) {
  const record = await store.get(id);
  if (!record) throw notFound(id);
  return record;
}
