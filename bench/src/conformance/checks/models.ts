import { type Check, expect, expectStatus } from "../check";
import { requestJson } from "../http";
import { assertSchema } from "../validate";

export const MODEL_CHECKS: readonly Check[] = [
  {
    id: "models.list",
    endpoint: "GET /v1/models",
    title: "lists the served model",
    run: async ({ target, client }) => {
      const reply = await requestJson(target, "GET", "/v1/models");
      expectStatus(reply, 200, "list");
      assertSchema("ListModelsResponse", reply.body);
      const ids = (reply.body as { data: { id: string }[] }).data.map((m) => m.id);
      expect(ids.includes(target.model), `model ${target.model} not in ${ids.join(", ")}`);
      const page = await client.models.list();
      expect(
        page.data.some((m) => m.id === target.model),
        "official client: model not listed",
      );
    },
  },
  {
    id: "models.retrieve",
    endpoint: "GET /v1/models/{model}",
    title: "retrieves the served model",
    run: async ({ target, client }) => {
      const reply = await requestJson(
        target,
        "GET",
        `/v1/models/${encodeURIComponent(target.model)}`,
      );
      expectStatus(reply, 200, "retrieve");
      assertSchema("Model", reply.body);
      expect((await client.models.retrieve(target.model)).id === target.model, "client: wrong id");
    },
  },
  {
    id: "models.retrieve-unknown",
    endpoint: "GET /v1/models/{model}",
    title: "an unknown model is a 404 with an OpenAI error body",
    run: async ({ target }) => {
      const reply = await requestJson(target, "GET", "/v1/models/no-such-model-kiln");
      expectStatus(reply, 404, "unknown model");
      assertSchema("ErrorResponse", reply.body);
    },
  },
];
