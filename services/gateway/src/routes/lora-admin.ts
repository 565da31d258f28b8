import { KilnError } from "@kiln/proto";
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { LoraRegistry } from "../lora/registry";
import { requireAdmin } from "../tenancy";

/**
 * The admin check of the LoRA endpoints: with a keys file, only admin keys may load or unload
 * adapters (403 `permission_denied` otherwise); the endpoints exist only with
 * KILN_ALLOW_RUNTIME_LORA_UPDATING=1.
 */
function checkAdmin(request: FastifyRequest): void {
  requireAdmin(request);
}

function stringField(body: unknown, field: string): string {
  const value =
    typeof body === "object" && body !== null
      ? (body as Record<string, unknown>)[field]
      : undefined;
  if (typeof value !== "string" || value === "") {
    throw new KilnError("INVALID_REQUEST", `'${field}' is required and must be a string.`, field);
  }
  return value;
}

/**
 * vLLM's runtime adapter endpoints: POST /v1/load_lora_adapter {lora_name, lora_path} and
 * POST /v1/unload_lora_adapter {lora_name}. Registered only when runtime updating is allowed.
 */
export function registerLoraAdminRoutes(app: FastifyInstance, lora: LoraRegistry): void {
  app.post("/v1/load_lora_adapter", async (request, reply) => {
    checkAdmin(request);
    const name = stringField(request.body, "lora_name");
    const path = stringField(request.body, "lora_path");
    await lora.load(name, path);
    reply.type("text/plain");
    return `Success: LoRA adapter '${name}' added successfully.`;
  });
  app.post("/v1/unload_lora_adapter", async (request, reply) => {
    checkAdmin(request);
    const name = stringField(request.body, "lora_name");
    lora.unload(name);
    reply.type("text/plain");
    return `Success: LoRA adapter '${name}' removed successfully.`;
  });
}
