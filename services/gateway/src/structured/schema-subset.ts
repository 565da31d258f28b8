import { KilnError } from "@kiln/proto";

/**
 * The JSON Schema subset structured output supports (docs/api.md, "Supported JSON Schema"). A
 * keyword outside it is a 400 that names it, never silently ignored: the grammar would not
 * enforce it and the output could break the schema the client relies on.
 */
const ANNOTATIONS = new Set([
  "title",
  "description",
  "default",
  "examples",
  "$schema",
  "$id",
  "$comment",
  "deprecated",
  "readOnly",
  "writeOnly",
]);

const KEYWORDS = new Set([
  "type",
  "properties",
  "required",
  "additionalProperties",
  "enum",
  "const",
  "anyOf",
  "oneOf",
  "items",
  "prefixItems",
  "minItems",
  "maxItems",
  "minLength",
  "maxLength",
  "pattern",
  "minimum",
  "maximum",
  "exclusiveMinimum",
  "exclusiveMaximum",
  "$ref",
  "$defs",
  "definitions",
]);

const TYPES = new Set(["object", "array", "string", "integer", "number", "boolean", "null"]);

/**
 * Throws KilnError("INVALID_REQUEST", param) when `schema` is not a valid schema of the
 * supported subset: an unsupported keyword (named, with its path), a wrong keyword value, a
 * `$ref` that does not resolve to `#/$defs/...` or `#/definitions/...`, or bounds that contradict.
 */
export function checkSchemaSubset(schema: unknown, param: string): void {
  if (schema === true || schema === false) return;
  if (!isRecord(schema)) throw invalid(param, "the schema must be a JSON object");
  checkNode(schema, schema, param, "#");
}

function checkNode(node: unknown, root: Record<string, unknown>, param: string, at: string): void {
  if (node === true || node === false) return;
  if (!isRecord(node)) throw invalid(param, `${at} must be a schema object`);
  for (const [key, value] of Object.entries(node)) {
    if (ANNOTATIONS.has(key)) continue;
    if (!KEYWORDS.has(key)) {
      throw new KilnError(
        "INVALID_REQUEST",
        `Unsupported JSON Schema keyword '${key}' at ${at} in '${param}'. Supported: ${[...KEYWORDS].join(", ")}.`,
        param,
      );
    }
    checkKeyword(key, value, root, param, `${at}/${key}`);
  }
  checkBounds(node, param, at);
}

function checkKeyword(
  key: string,
  value: unknown,
  root: Record<string, unknown>,
  param: string,
  at: string,
): void {
  switch (key) {
    case "type": {
      const types = Array.isArray(value) ? value : [value];
      if (types.length === 0 || !types.every((t) => typeof t === "string" && TYPES.has(t))) {
        throw invalid(param, `${at} must be one of ${[...TYPES].join(", ")} (or a list of them)`);
      }
      return;
    }
    case "properties":
    case "$defs":
    case "definitions":
      if (!isRecord(value)) throw invalid(param, `${at} must be an object of schemas`);
      for (const [name, sub] of Object.entries(value)) checkNode(sub, root, param, `${at}/${name}`);
      return;
    case "required":
      if (!Array.isArray(value) || !value.every((r) => typeof r === "string")) {
        throw invalid(param, `${at} must be a list of property names`);
      }
      return;
    case "additionalProperties":
    case "items":
      checkNode(value, root, param, at);
      return;
    case "anyOf":
    case "oneOf":
    case "prefixItems":
      if (!Array.isArray(value) || value.length === 0) {
        throw invalid(param, `${at} must be a non-empty list of schemas`);
      }
      value.forEach((sub, i) => {
        checkNode(sub, root, param, `${at}/${i}`);
      });
      return;
    case "enum":
      if (!Array.isArray(value) || value.length === 0) {
        throw invalid(param, `${at} must be a non-empty list`);
      }
      return;
    case "pattern":
      checkPattern(value, param, at);
      return;
    case "$ref":
      checkRef(value, root, param, at);
      return;
    case "const":
      return;
    default:
      if (typeof value !== "number" || !Number.isFinite(value)) {
        throw invalid(param, `${at} must be a number`);
      }
      if (/Items$|Length$/.test(key) && (!Number.isInteger(value) || value < 0)) {
        throw invalid(param, `${at} must be a non-negative integer`);
      }
  }
}

function checkBounds(node: Record<string, unknown>, param: string, at: string): void {
  const pairs = [
    ["minItems", "maxItems"],
    ["minLength", "maxLength"],
    ["minimum", "maximum"],
  ] as const;
  for (const [lo, hi] of pairs) {
    const min = node[lo];
    const max = node[hi];
    if (typeof min === "number" && typeof max === "number" && min > max) {
      throw invalid(param, `${at}: ${lo} (${min}) is greater than ${hi} (${max})`);
    }
  }
}

function checkPattern(value: unknown, param: string, at: string): void {
  if (typeof value !== "string") throw invalid(param, `${at} must be a string`);
  try {
    new RegExp(value, "u");
  } catch (err) {
    throw invalid(param, `${at} is not a valid regular expression (${(err as Error).message})`);
  }
}

function checkRef(value: unknown, root: Record<string, unknown>, param: string, at: string): void {
  const match = typeof value === "string" ? /^#\/(\$defs|definitions)\/([^/]+)$/.exec(value) : null;
  if (!match) {
    throw invalid(param, `${at} must point into #/$defs or #/definitions of the same schema`);
  }
  const defs = root[match[1]!];
  if (!isRecord(defs) || !(decodeURIComponent(match[2]!) in defs)) {
    throw invalid(param, `${at}: '${String(value)}' does not resolve`);
  }
}

function invalid(param: string, what: string): KilnError {
  return new KilnError("INVALID_REQUEST", `Invalid JSON Schema in '${param}': ${what}.`, param);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}
