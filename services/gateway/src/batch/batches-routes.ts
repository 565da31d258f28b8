import { KilnError } from "@kiln/proto";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { type BatchService, checkEndpoint } from "./batch-service";
import { listPage } from "./files-routes";
import { canSee, ownerOf } from "./tenant";
import { batchDisabledError } from "./unavailable";

/** The Batches API: create, get, list and cancel. `service` null answers 503. */
export function registerBatchRoutes(app: FastifyInstance, service: BatchService | null): void {
  const need = (): BatchService => {
    if (!service) throw batchDisabledError();
    return service;
  };
  app.post("/v1/batches", async (request) => {
    const svc = need();
    const body = parseCreateBody(request.body);
    const file = await svc.files.tryGet(body.input_file_id);
    if (!file || !canSee(request, file.owner)) {
      throw new KilnError(
        "NOT_FOUND",
        `No such File object: ${body.input_file_id}`,
        "input_file_id",
      );
    }
    if (file.purpose !== "batch") {
      throw new KilnError(
        "INVALID_REQUEST",
        `File ${file.id} was not uploaded with purpose 'batch'.`,
        "input_file_id",
      );
    }
    return svc.create({
      inputFileId: file.id,
      endpoint: body.endpoint,
      completionWindow: body.completion_window,
      metadata: body.metadata,
      owner: ownerOf(request),
    });
  });
  app.get("/v1/batches", async (request) => {
    const svc = need();
    const query = request.query as { limit?: string; after?: string };
    const batches = [];
    for (const id of await svc.store.listIds()) {
      const found = await svc.store.tryGet(id);
      if (found && canSee(request, found.owner)) batches.push(found.batch);
    }
    return listPage(batches, query.limit ?? "20", query.after);
  });
  app.get("/v1/batches/:id", async (request) => (await visibleBatch(request, need())).batch);
  app.post("/v1/batches/:id/cancel", async (request) => {
    const svc = need();
    const { batch } = await visibleBatch(request, svc);
    if (!["validating", "in_progress", "cancelling"].includes(batch.status)) {
      throw new KilnError(
        "INVALID_REQUEST",
        `Cannot cancel a batch with status '${batch.status}'.`,
        "id",
      );
    }
    await svc.cancel(batch.id);
    return (await visibleBatch(request, svc)).batch;
  });
}

async function visibleBatch(request: FastifyRequest, service: BatchService) {
  const { id } = request.params as { id: string };
  const found = await service.store.tryGet(id);
  if (!found || !canSee(request, found.owner)) {
    throw new KilnError("NOT_FOUND", `No such Batch object: ${id}`, "id");
  }
  return found;
}

interface CreateBody {
  input_file_id: string;
  endpoint: string;
  completion_window: string;
  metadata: Record<string, string> | null;
}

const CREATE_FIELDS = ["input_file_id", "endpoint", "completion_window", "metadata"];

function parseCreateBody(raw: unknown): CreateBody {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    throw new KilnError("INVALID_REQUEST", "The request body must be a JSON object.");
  }
  const body = raw as Record<string, unknown>;
  const unknownField = Object.keys(body).find((k) => !CREATE_FIELDS.includes(k));
  if (unknownField) {
    throw new KilnError(
      "INVALID_REQUEST",
      `Unrecognized request argument supplied: ${unknownField}`,
      unknownField,
    );
  }
  if (typeof body.input_file_id !== "string" || body.input_file_id === "") {
    throw new KilnError(
      "INVALID_REQUEST",
      "Missing required parameter: 'input_file_id'.",
      "input_file_id",
    );
  }
  const endpoint = checkEndpoint(body.endpoint);
  if (body.completion_window !== "24h") {
    throw new KilnError(
      "INVALID_REQUEST",
      "'completion_window' must be \"24h\".",
      "completion_window",
    );
  }
  return {
    input_file_id: body.input_file_id,
    endpoint,
    completion_window: "24h",
    metadata: parseMetadata(body.metadata),
  };
}

function parseMetadata(value: unknown): Record<string, string> | null {
  if (value === undefined || value === null) return null;
  const isValid =
    typeof value === "object" &&
    !Array.isArray(value) &&
    Object.keys(value).length <= 16 &&
    Object.entries(value).every(
      ([k, v]) => k.length <= 64 && typeof v === "string" && v.length <= 512,
    );
  if (!isValid) {
    throw new KilnError(
      "INVALID_REQUEST",
      "'metadata' must be an object of at most 16 string values (keys ≤ 64, values ≤ 512 characters).",
      "metadata",
    );
  }
  return value as Record<string, string>;
}
