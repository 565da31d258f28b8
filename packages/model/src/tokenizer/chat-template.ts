import { Template } from "@huggingface/jinja";
import { ChatTemplateError } from "./errors";
import { DEFAULT_TEMPLATE_NAME, loadTokenizerSettings } from "./tokenizer-settings";

/**
 * One conversation turn, in the shape chat templates read: OpenAI / transformers field
 * names, snake_case included (`tool_calls`, `tool_call_id`), passed to the template as is.
 */
export interface ChatMessage {
  readonly role: string;
  /** Text, or a list of content parts (`{ type: "text", text }`) for templates that take them. */
  readonly content?: string | readonly unknown[] | null;
  readonly [field: string]: unknown;
}

export interface RenderChatOptions {
  /** End with the cue for the assistant's next turn. Default false, as in transformers. */
  readonly addGenerationPrompt?: boolean;
  /** Tool definitions (JSON schema objects), passed as `tools`; selects the "tool_use"
   * template when the model has one and `templateName` is not given. */
  readonly tools?: readonly unknown[];
  /** Render a named template instead of "default". */
  readonly templateName?: string;
  /** More template variables (e.g. `enable_thinking`). The variables this API sets win. */
  readonly extra?: Readonly<Record<string, unknown>>;
}

/** Special-token texts a template may write (`bos_token`, ...); null ones are left unset. */
export interface ChatTemplateTokens {
  readonly bosToken?: string | null;
  readonly eosToken?: string | null;
  readonly unkToken?: string | null;
  readonly padToken?: string | null;
}

/** A model's chat template(s), parsed on first use and immutable after. */
export interface ChatTemplate {
  /** Names of the templates the model ships ("default", "tool_use", ...). */
  readonly names: readonly string[];
  /**
   * Renders the prompt text, special tokens written as text (see Tokenizer.encodeChat for
   * tokenizing it). Throws ChatTemplateError: NO_CHAT_TEMPLATE when the template to use does
   * not exist, CHAT_TEMPLATE_REJECTED when the template calls raise_exception (its message
   * is the error's), CHAT_TEMPLATE_FAILED when it cannot be parsed or rendered.
   */
  render(messages: readonly ChatMessage[], opts?: RenderChatOptions): string;
}

const TOOL_USE_TEMPLATE_NAME = "tool_use";

/** Thrown from inside the template by raise_exception, so render can tell it apart. */
class RaisedByTemplate extends Error {}

// The library predefines raise_exception (throwing a plain Error, like its own failures) and
// refuses to redefine it, so parsed templates call ours under another name.
const RAISE_EXCEPTION = "raise_exception";
const KILN_RAISE_EXCEPTION = "__kiln_raise_exception";

/** A ChatTemplate over named sources (see TokenizerSettings), or null when there are none. */
export function createChatTemplate(
  sources: ReadonlyMap<string, string>,
  tokens: ChatTemplateTokens,
): ChatTemplate | null {
  if (sources.size === 0) return null;
  const nameToParsed = new Map<string, Template>();
  const parse = (name: string, source: string): Template => {
    const cached = nameToParsed.get(name);
    if (cached !== undefined) return cached;
    let parsed: Template;
    try {
      parsed = new Template(source);
      renameIdentifier(parsed.parsed, RAISE_EXCEPTION, KILN_RAISE_EXCEPTION);
    } catch (err) {
      throw failed(`chat template "${name}" does not parse`, err);
    }
    nameToParsed.set(name, parsed);
    return parsed;
  };
  return {
    names: [...sources.keys()],
    render(messages, opts = {}) {
      const name = pickTemplateName(sources, opts);
      const template = parse(name, sources.get(name) ?? "");
      try {
        return template.render(templateContext(messages, opts, tokens));
      } catch (err) {
        if (err instanceof RaisedByTemplate) {
          throw new ChatTemplateError("CHAT_TEMPLATE_REJECTED", err.message, { cause: err });
        }
        throw failed(`chat template "${name}" failed to render`, err);
      }
    },
  };
}

/**
 * Reads the chat template(s) of a model directory (tokenizer_config.json's chat_template,
 * or chat_template.jinja / chat_template.json). Null when the model ships none. Throws
 * ModelError("INVALID_CONFIG") when a file is malformed.
 */
export async function loadChatTemplate(dir: string): Promise<ChatTemplate | null> {
  const settings = await loadTokenizerSettings(dir);
  return createChatTemplate(settings.chatTemplates, settings);
}

/** The error renderChat gives for a model without a template. */
export function noChatTemplateError(): ChatTemplateError {
  return new ChatTemplateError(
    "NO_CHAT_TEMPLATE",
    "this model has no chat template (tokenizer_config.json sets no chat_template); " +
      "use the completions endpoint",
  );
}

/** transformers' choice: the named one; else "tool_use" for a request with tools; else
 * "default". */
function pickTemplateName(sources: ReadonlyMap<string, string>, opts: RenderChatOptions): string {
  const available = [...sources.keys()].join(", ");
  if (opts.templateName !== undefined) {
    if (sources.has(opts.templateName)) return opts.templateName;
    throw new ChatTemplateError(
      "NO_CHAT_TEMPLATE",
      `this model has no chat template named "${opts.templateName}" (it has: ${available})`,
    );
  }
  const hasTools = opts.tools !== undefined && opts.tools.length > 0;
  if (hasTools && sources.has(TOOL_USE_TEMPLATE_NAME)) return TOOL_USE_TEMPLATE_NAME;
  if (sources.has(DEFAULT_TEMPLATE_NAME)) return DEFAULT_TEMPLATE_NAME;
  throw new ChatTemplateError(
    "NO_CHAT_TEMPLATE",
    `this model has several chat templates (${available}) and none is "${DEFAULT_TEMPLATE_NAME}"; name one`,
  );
}

function templateContext(
  messages: readonly ChatMessage[],
  opts: RenderChatOptions,
  tokens: ChatTemplateTokens,
): Record<string, unknown> {
  const context: Record<string, unknown> = { ...opts.extra };
  // transformers passes only the special tokens the tokenizer has.
  const tokenVars: [string, string | null | undefined][] = [
    ["bos_token", tokens.bosToken],
    ["eos_token", tokens.eosToken],
    ["unk_token", tokens.unkToken],
    ["pad_token", tokens.padToken],
  ];
  for (const [key, value] of tokenVars) {
    if (typeof value === "string") context[key] = value;
  }
  context["messages"] = messages;
  // transformers passes tools=None when there are none; templates test `tools is not none`.
  context["tools"] = opts.tools ?? null;
  context["add_generation_prompt"] = opts.addGenerationPrompt ?? false;
  context[KILN_RAISE_EXCEPTION] = (message: unknown) => {
    throw new RaisedByTemplate(String(message));
  };
  return context;
}

/** Renames every use of identifier `from` in a parsed template (a tree of plain objects). */
function renameIdentifier(node: unknown, from: string, to: string): void {
  if (typeof node !== "object" || node === null) return;
  if (Array.isArray(node)) {
    for (const child of node) renameIdentifier(child, from, to);
    return;
  }
  const fields = node as Record<string, unknown>;
  if (fields["type"] === "Identifier" && fields["value"] === from) fields["value"] = to;
  for (const child of Object.values(fields)) renameIdentifier(child, from, to);
}

function failed(what: string, err: unknown): ChatTemplateError {
  const detail = err instanceof Error ? err.message : String(err);
  return new ChatTemplateError("CHAT_TEMPLATE_FAILED", `${what}: ${detail}`, { cause: err });
}
