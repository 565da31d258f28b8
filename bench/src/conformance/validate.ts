import { readFileSync } from "node:fs";
import { Ajv, type ValidateFunction } from "ajv";

const SCHEMA_URL = new URL("./schemas/openai-subset.json", import.meta.url);
const ajv = new Ajv({ allErrors: false, strict: false });
const doc = JSON.parse(readFileSync(SCHEMA_URL, "utf8")) as { $id: string };
ajv.addSchema(doc);
const compiled = new Map<string, ValidateFunction>();

/** Schema names in schemas/openai-subset.json (its `$defs`). */
export type SchemaName =
  | "ErrorResponse"
  | "ListModelsResponse"
  | "Model"
  | "CreateChatCompletionResponse"
  | "CreateChatCompletionStreamResponse"
  | "CreateCompletionResponse"
  | "CreateCompletionStreamChunk"
  | "CreateEmbeddingResponse"
  | "Response"
  | "ResponseStreamEvent"
  | "DeletedResponse"
  | "ResponseItemList";

/** Throws an Error naming the first schema violation of `value` against `name`. */
export function assertSchema(name: SchemaName, value: unknown, what: string = name): void {
  let validate = compiled.get(name);
  if (!validate) {
    const found = ajv.getSchema(`${doc.$id}#/$defs/${name}`);
    if (!found) throw new Error(`no schema ${name}`);
    validate = found;
    compiled.set(name, validate);
  }
  if (validate(value)) return;
  const e = validate.errors?.[0];
  const at = e ? `${e.instancePath || "/"} ${e.message}` : "invalid";
  throw new Error(`${what} does not match ${name}: ${at} (${JSON.stringify(value).slice(0, 300)})`);
}
