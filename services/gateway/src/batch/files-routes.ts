import { rm } from "node:fs/promises";
import multipart from "@fastify/multipart";
import { KilnError } from "@kiln/proto";
import type { FastifyInstance, FastifyRequest } from "fastify";
import {
  type FileObject,
  type FileStore,
  newFileId,
  publicFile,
  type UploadLimits,
} from "./file-store";
import { canSee, ownerOf } from "./tenant";
import { batchDisabledError } from "./unavailable";

const SUPPORTED_PURPOSES = ["batch"];

/** The Files API: upload (multipart), list, get, content and delete. `store` null answers 503. */
export function registerFileRoutes(
  app: FastifyInstance,
  store: FileStore | null,
  limits: UploadLimits,
): void {
  // The byte limit is checked while streaming (413 naming it); multipart's own is a backstop.
  void app.register(multipart, {
    limits: { fileSize: limits.maxBytes + 1024 * 1024, files: 1, fields: 10 },
  });
  const need = (): FileStore => {
    if (!store) throw batchDisabledError();
    return store;
  };
  app.post("/v1/files", async (request) => upload(request, need(), limits));
  app.get("/v1/files", async (request) => {
    const query = request.query as { purpose?: string; limit?: string; after?: string };
    let files = (await need().list()).filter((f) => canSee(request, f.owner));
    if (query.purpose) files = files.filter((f) => f.purpose === query.purpose);
    return listPage(files.map(publicFile), query.limit, query.after);
  });
  app.get("/v1/files/:id", async (request) => publicFile(await visibleFile(request, need())));
  app.get("/v1/files/:id/content", async (request, reply) => {
    const file = await visibleFile(request, need());
    return reply.type("application/jsonl").send(need().openContent(file.id));
  });
  app.delete("/v1/files/:id", async (request) => {
    const file = await visibleFile(request, need());
    await need().delete(file.id);
    return { id: file.id, object: "file", deleted: true };
  });
}

async function visibleFile(request: FastifyRequest, store: FileStore) {
  const { id } = request.params as { id: string };
  const file = await store.tryGet(id);
  if (!file || !canSee(request, file.owner)) {
    throw new KilnError("NOT_FOUND", `No such File object: ${id}`, "id");
  }
  return file;
}

async function upload(
  request: FastifyRequest,
  store: FileStore,
  limits: UploadLimits,
): Promise<FileObject> {
  if (!request.isMultipart()) {
    throw new KilnError(
      "INVALID_REQUEST",
      "Uploads must be multipart/form-data with a 'file' and a 'purpose' field.",
      "file",
    );
  }
  let tmpPath: string | null = null;
  let filename = "";
  let purpose: string | null = null;
  try {
    for await (const part of request.parts()) {
      if (part.type === "file") {
        if (part.fieldname !== "file" || tmpPath !== null) {
          part.file.resume();
          throw new KilnError(
            "INVALID_REQUEST",
            "Send exactly one file, in the 'file' field.",
            "file",
          );
        }
        tmpPath = store.tmpPath();
        filename = part.filename;
        await store.receive(part.file, tmpPath, limits);
      } else if (part.fieldname === "purpose") {
        purpose = String(part.value);
      }
    }
    if (tmpPath === null) {
      throw new KilnError("INVALID_REQUEST", "Missing required parameter: 'file'.", "file");
    }
    if (purpose === null || !SUPPORTED_PURPOSES.includes(purpose)) {
      throw new KilnError(
        "INVALID_REQUEST",
        purpose === null
          ? "Missing required parameter: 'purpose'."
          : `'${purpose}' is not a supported purpose; Kiln accepts: ${SUPPORTED_PURPOSES.join(", ")}.`,
        "purpose",
      );
    }
    const file = await store.commit(newFileId(), tmpPath, {
      filename,
      purpose,
      owner: ownerOf(request),
    });
    tmpPath = null;
    return file;
  } finally {
    if (tmpPath) await rm(tmpPath, { force: true });
  }
}

/** OpenAI's list envelope with cursor paging (`after` an id, `limit` items). */
export function listPage<T extends { id: string }>(items: T[], limitText?: string, after?: string) {
  const limit = Math.max(1, Math.min(10_000, Number(limitText ?? 10_000) || 10_000));
  const start = after ? items.findIndex((f) => f.id === after) + 1 : 0;
  const data = items.slice(start, start + limit);
  return {
    object: "list",
    data,
    first_id: data[0]?.id ?? null,
    last_id: data.at(-1)?.id ?? null,
    has_more: start + limit < items.length,
  };
}
