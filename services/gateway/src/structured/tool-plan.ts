import { type GrammarSpec, KilnError } from "@kiln/proto";
import { checkSchemaSubset } from "./schema-subset";
import type { ToolCallParser } from "./tool-parsers";

/** A function tool as the chat API declares it. */
export interface ChatTool {
  readonly name: string;
  readonly description?: string;
  readonly parameters: Record<string, unknown>;
}

/**
 * How a chat request uses tools (ADR 0016):
 * - `tools` are rendered into the prompt (all of them, or the named one);
 * - `grammar` (tool_choice "required" or a named function) constrains generation to the
 *   parser's call format with each function's parameter schema; null with "auto";
 * - the output is parsed for calls with `parser`.
 */
export interface ToolPlan {
  readonly tools: readonly ChatTool[];
  readonly toolNames: ReadonlySet<string>;
  readonly parser: ToolCallParser;
  readonly grammar: GrammarSpec | null;
  /** With "required" or a named function every finished output is a call. */
  readonly isCallRequired: boolean;
}

/** Null when the request uses no tools (none declared, or tool_choice "none"). */
export function planTools(
  body: { tools?: unknown; tool_choice?: unknown; parallel_tool_calls?: boolean | null },
  parser: ToolCallParser,
): ToolPlan | null {
  const tools = parseTools(body.tools);
  const choice = body.tool_choice ?? (tools.length > 0 ? "auto" : "none");
  if (choice === "none") return null;
  if (tools.length === 0) {
    throw new KilnError(
      "INVALID_REQUEST",
      "'tool_choice' is only allowed when 'tools' are specified.",
      "tool_choice",
    );
  }
  const isParallel = body.parallel_tool_calls !== false;
  let callable = tools;
  if (choice === "auto" || choice === "required") {
    // Both render every tool.
  } else if (isRecord(choice) && choice.type === "function" && isRecord(choice.function)) {
    const name = choice.function.name;
    callable = tools.filter((t) => t.name === name);
    if (callable.length === 0) {
      throw new KilnError(
        "INVALID_REQUEST",
        `Invalid value for 'tool_choice': no tool named '${String(name)}' in 'tools'.`,
        "tool_choice",
      );
    }
  } else {
    throw new KilnError(
      "INVALID_REQUEST",
      "Invalid value for 'tool_choice': expected 'none', 'auto', 'required' or " +
        '{"type": "function", "function": {"name": ...}}.',
      "tool_choice",
    );
  }
  const isCallRequired = choice !== "auto";
  if (isCallRequired) {
    // Only a constrained call needs the parameters in the grammar's subset.
    for (const tool of callable) {
      checkSchemaSubset(tool.parameters, `tools[${tools.indexOf(tool)}].function.parameters`);
    }
  }
  const grammar: GrammarSpec | null = isCallRequired
    ? {
        kind: "structural_tag",
        text: JSON.stringify(parser.structuralTag(callable, isParallel && choice === "required")),
        strict: true,
      }
    : null;
  return {
    tools: callable,
    toolNames: new Set(callable.map((t) => t.name)),
    parser,
    grammar,
    isCallRequired,
  };
}

function parseTools(value: unknown): ChatTool[] {
  if (value === null || value === undefined) return [];
  if (!Array.isArray(value)) throw invalid("tools", "expected a list of tools");
  const names = new Set<string>();
  return value.map((tool: unknown, i) => {
    const at = `tools[${i}]`;
    if (!isRecord(tool) || tool.type !== "function" || !isRecord(tool.function)) {
      throw invalid(at, 'expected {"type": "function", "function": {...}}');
    }
    const fn = tool.function;
    if (typeof fn.name !== "string" || !/^[A-Za-z0-9_-]{1,64}$/.test(fn.name)) {
      throw invalid(`${at}.function.name`, "expected 1 to 64 letters, digits, '_' or '-'");
    }
    if (names.has(fn.name)) throw invalid(`${at}.function.name`, `'${fn.name}' is declared twice`);
    names.add(fn.name);
    const parameters = fn.parameters ?? { type: "object", properties: {} };
    if (!isRecord(parameters))
      throw invalid(`${at}.function.parameters`, "expected a JSON Schema object");
    const description = typeof fn.description === "string" ? fn.description : undefined;
    return { name: fn.name, parameters, ...(description ? { description } : {}) };
  });
}

/** The tools in the chat API's shape, for the template's `tools` variable. */
export function templateTools(tools: readonly ChatTool[]): unknown[] {
  return tools.map((t) => ({
    type: "function",
    function: {
      name: t.name,
      ...(t.description ? { description: t.description } : {}),
      parameters: t.parameters,
    },
  }));
}

/** The documented fallback for templates that ignore `tools`: a system message. */
export function toolsFallbackPrompt(plan: ToolPlan): string {
  const lines = plan.tools.map((t) =>
    JSON.stringify({ name: t.name, description: t.description, parameters: t.parameters }),
  );
  return `Functions:\n${lines.join("\n")}\n${plan.parser.instructions}`;
}

function invalid(param: string, what: string): KilnError {
  return new KilnError("INVALID_REQUEST", `Invalid value for '${param}': ${what}.`, param);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}
