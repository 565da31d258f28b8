import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { readJsonFile } from "../config";
import { hasErrnoCode, ModelError } from "../errors";

/**
 * What Kiln takes from tokenizer_config.json, special_tokens_map.json and the standalone
 * chat-template files. Token strings are contents ("<s>"), not ids: tokenizer.json maps them.
 */
export interface TokenizerSettings {
  readonly bosToken: string | null;
  readonly eosToken: string | null;
  readonly unkToken: string | null;
  readonly padToken: string | null;
  /** null when tokenizer_config.json does not say: tokenizer.json's post-processor decides. */
  readonly addBosToken: boolean | null;
  readonly addEosToken: boolean | null;
  /** Chat-template sources by name; a lone template is named "default". Empty when none. */
  readonly chatTemplates: ReadonlyMap<string, string>;
}

/** The name HF gives a lone chat template, and the one it renders when none is asked for. */
export const DEFAULT_TEMPLATE_NAME = "default";

// A special token is written either as its content or as a serialized AddedToken.
const tokenSpec = z
  .union([z.string(), z.looseObject({ content: z.string() })])
  .nullish()
  .transform((v) => (v === null || v === undefined ? null : typeof v === "string" ? v : v.content));

const templateSpec = z.union([
  z.string(),
  z.array(z.looseObject({ name: z.string(), template: z.string() })),
]);

// Unknown keys (model_max_length, tokenizer_class, added_tokens_decoder...) are ignored on
// purpose: tokenizer.json is the source of truth for the vocabulary and the added tokens.
const configSchema = z.looseObject({
  bos_token: tokenSpec,
  eos_token: tokenSpec,
  unk_token: tokenSpec,
  pad_token: tokenSpec,
  add_bos_token: z.boolean().nullish(),
  add_eos_token: z.boolean().nullish(),
  chat_template: templateSpec.nullish(),
});

const specialMapSchema = z.looseObject({
  bos_token: tokenSpec,
  eos_token: tokenSpec,
  unk_token: tokenSpec,
  pad_token: tokenSpec,
});

const chatTemplateJsonSchema = z.looseObject({ chat_template: templateSpec });

/**
 * Reads the tokenizer's settings from a model directory. Every file is optional (a missing
 * one reads as empty). Throws ModelError("INVALID_CONFIG") naming the file and field when a
 * file is not valid JSON or a field has the wrong type.
 */
export async function loadTokenizerSettings(dir: string): Promise<TokenizerSettings> {
  const config = parseWith(
    configSchema,
    await tryReadJson(join(dir, "tokenizer_config.json")),
    "tokenizer_config.json",
  );
  const specialMap = parseWith(
    specialMapSchema,
    await tryReadJson(join(dir, "special_tokens_map.json")),
    "special_tokens_map.json",
  );
  return {
    // tokenizer_config.json wins: transformers reads special_tokens_map.json only for what
    // the config leaves out.
    bosToken: config.bos_token ?? specialMap.bos_token,
    eosToken: config.eos_token ?? specialMap.eos_token,
    unkToken: config.unk_token ?? specialMap.unk_token,
    padToken: config.pad_token ?? specialMap.pad_token,
    addBosToken: config.add_bos_token ?? null,
    addEosToken: config.add_eos_token ?? null,
    chatTemplates: await loadChatTemplates(dir, config.chat_template ?? null),
  };
}

/**
 * Template sources, as transformers finds them: a standalone chat_template.jinja (or
 * chat_template.json) overrides the `chat_template` field of tokenizer_config.json.
 */
async function loadChatTemplates(
  dir: string,
  fromConfig: z.infer<typeof templateSpec> | null,
): Promise<ReadonlyMap<string, string>> {
  const jinja = await tryReadText(join(dir, "chat_template.jinja"));
  if (jinja !== null) return new Map([[DEFAULT_TEMPLATE_NAME, jinja]]);
  const json = await tryReadJson(join(dir, "chat_template.json"));
  const spec =
    json === null
      ? fromConfig
      : parseWith(chatTemplateJsonSchema, json, "chat_template.json").chat_template;
  if (spec === null) return new Map();
  if (typeof spec === "string") return new Map([[DEFAULT_TEMPLATE_NAME, spec]]);
  return new Map(spec.map((t) => [t.name, t.template]));
}

function parseWith<T extends z.ZodType>(schema: T, json: unknown, file: string): z.output<T> {
  const parsed = schema.safeParse(json ?? {});
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const field = issue?.path.map(String).join(".") || "(root)";
  throw new ModelError("INVALID_CONFIG", `${file}: ${field}: ${issue?.message ?? "invalid"}`);
}

/** Parsed JSON, or null when the file does not exist. */
async function tryReadJson(path: string): Promise<unknown> {
  try {
    return await readJsonFile(path, "INVALID_CONFIG");
  } catch (err) {
    if (err instanceof ModelError && err.code === "NOT_FOUND") return null;
    throw err;
  }
}

/** File contents, or null when the file does not exist. */
async function tryReadText(path: string): Promise<string | null> {
  try {
    return await readFile(path, "utf8");
  } catch (err) {
    if (hasErrnoCode(err, "ENOENT")) return null;
    throw err;
  }
}
