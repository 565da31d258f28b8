import { KilnError } from "@kiln/proto";
import type { GatewayDeps } from "../app";
import { checkModel } from "../model-info";
import { buildPlan, type GenerationPlan } from "../params";
import type { FunctionTool, InputItem, ParsedResponsesBody } from "../schemas/responses";
import { responsesTextGrammar, responsesToolGrammar } from "../structured/completion-grammar";
import type { ChatMessage } from "../text-codec";
import { newId, type ResponseObject } from "./builder";
import { inputMessages, promptMessages } from "./conversation";
import type { ResponseStore } from "./store";
import { templateTools, toolSystemPrompt } from "./tool-calls";

/** Everything a response needs before it runs. */
export interface PreparedResponse {
  readonly response: ResponseObject;
  readonly plan: GenerationPlan;
  /** Earlier turns plus this input, without the instructions. */
  readonly history: readonly ChatMessage[];
  readonly inputItems: readonly unknown[];
  /** Names of the function tools the output may call (empty with tool_choice "none"). */
  readonly toolNames: ReadonlySet<string>;
  readonly isStored: boolean;
}

/** Validates against the served model and the store, renders the prompt, plans generation. */
export async function prepareResponse(
  deps: GatewayDeps,
  store: ResponseStore,
  parsed: ParsedResponsesBody,
): Promise<PreparedResponse> {
  const { body, tools } = parsed;
  checkModel(body.model, deps.model);
  const previous = body.previous_response_id
    ? await loadPrevious(store, body.previous_response_id)
    : [];
  const history = [...previous, ...inputMessages(body.input)];
  const activeTools = callableTools(tools, body.tool_choice);
  const promptIds = await deps.codec.encodeChat(promptMessages(body.instructions, history), {
    tools: templateTools(activeTools),
    toolsFallbackPrompt: toolSystemPrompt(activeTools),
  });
  const plan = {
    ...buildPlan({ temperature: body.temperature, top_p: body.top_p }, promptIds, deps.model, {
      promptParam: "input",
      defaultMaxTokens: null,
      maxTokens: body.max_output_tokens ?? null,
      numTopLogprobs: null,
    }),
    // text.format json_schema / json_object, or a required / named tool call, constrain the
    // output (ADR 0016).
    grammar: responsesToolGrammar(activeTools, body) ?? responsesTextGrammar(body.text),
  };
  const isStored = body.store ?? true;
  return {
    response: baseResponse(parsed, deps.model.id, plan, isStored),
    plan,
    history,
    inputItems: inputItemsOf(body.input),
    toolNames: new Set(activeTools.map((t) => t.name)),
    isStored,
  };
}

async function loadPrevious(store: ResponseStore, id: string): Promise<readonly ChatMessage[]> {
  const previous = await store.get(id);
  if (!previous) {
    throw new KilnError(
      "NOT_FOUND",
      `Previous response with id '${id}' not found.`,
      "previous_response_id",
    );
  }
  const status = previous.response.status;
  if (status === "queued" || status === "in_progress") {
    throw new KilnError(
      "INVALID_REQUEST",
      `Previous response '${id}' is still ${status}; wait until it finishes.`,
      "previous_response_id",
    );
  }
  return previous.history;
}

/** tool_choice "none" hides the tools; a named function narrows them to that one. */
function callableTools(
  tools: readonly FunctionTool[],
  choice: ParsedResponsesBody["body"]["tool_choice"],
): readonly FunctionTool[] {
  if (choice === "none") return [];
  if (typeof choice === "object" && choice) return tools.filter((t) => t.name === choice.name);
  return tools;
}

function baseResponse(
  { body }: ParsedResponsesBody,
  model: string,
  plan: GenerationPlan,
  isStored: boolean,
): ResponseObject {
  return {
    id: newId("resp"),
    object: "response",
    created_at: Math.floor(Date.now() / 1000),
    status: body.background ? "queued" : "in_progress",
    background: body.background ?? false,
    error: null,
    incomplete_details: null,
    instructions: body.instructions ?? null,
    max_output_tokens: body.max_output_tokens ?? null,
    max_tool_calls: body.max_tool_calls ?? null,
    model,
    output: [],
    parallel_tool_calls: body.parallel_tool_calls ?? true,
    previous_response_id: body.previous_response_id ?? null,
    reasoning: { effort: null, summary: null },
    service_tier: "default",
    store: isStored,
    temperature: plan.sampling.temperature,
    text: { format: (body.text as { format?: unknown } | null)?.format ?? { type: "text" } },
    tool_choice: body.tool_choice ?? "auto",
    tools: body.tools ?? [],
    top_p: plan.sampling.topP,
    truncation: body.truncation ?? "disabled",
    usage: null,
    user: body.user ?? null,
    metadata: body.metadata ?? {},
  };
}

/** The input as stored items with ids (GET /v1/responses/{id}/input_items). */
function inputItemsOf(input: ParsedResponsesBody["body"]["input"]): unknown[] {
  const items: InputItem[] =
    typeof input === "string" ? [{ role: "user" as const, content: input }] : input;
  return items.map((item) => {
    if ("role" in item && item.type !== "function_call" && item.type !== "function_call_output") {
      const content =
        typeof item.content === "string"
          ? [{ type: "input_text", text: item.content }]
          : item.content;
      return { id: newId("msg"), type: "message", status: "completed", role: item.role, content };
    }
    return { id: newId(item.type === "function_call" ? "fc" : "fco"), ...item };
  });
}
