import { randomBytes } from "node:crypto";
import { GREEDY_SAMPLING, KilnError } from "@kiln/proto";
import { generateChoices } from "../generation";
import type { GenerationPlan } from "../params";
import type { RouterPort } from "../router-port";
import type { TextCodec } from "../text-codec";
import { ALLOWED, type Guard, type GuardMessage, type GuardVerdict } from "./guard";

export interface LlmGuardOptions {
  readonly router: RouterPort;
  /** The guard model's tokenizer (the served model's: the guard runs on the same cluster). */
  readonly codec: TextCodec;
  /** Applied to the guard model's reply; a match means unsafe. Default /^\s*unsafe/i. */
  readonly unsafePattern?: RegExp;
  /** Tokens the guard model may write for its verdict. Default 16. */
  readonly maxTokens?: number;
  /**
   * "llama-guard" (default): Llama Guard's full prompt with its categories. "short": the same
   * structure without the category list, for guard models with a small context.
   */
  readonly template?: GuardTemplate;
}

export type GuardTemplate = "llama-guard" | "short";

/**
 * Llama Guard's prompt: the conversation, then the request for an assessment whose first line is
 * `safe` or `unsafe`. `role` is whose turn is judged ("User" for input, "Agent" for output).
 */
export function llamaGuardPrompt(
  messages: readonly GuardMessage[],
  role: "User" | "Agent",
  template: GuardTemplate = "llama-guard",
) {
  const turns = messages
    .map((m) => `${m.role === "assistant" ? "Agent" : "User"}: ${m.content}`)
    .join("\n\n");
  if (template === "short") {
    return (
      `[INST] Is the last ${role} message unsafe?\n<BEGIN CONVERSATION>\n${turns}\n` +
      "<END CONVERSATION>\nFirst line: 'safe' or 'unsafe'. [/INST]"
    );
  }
  return (
    `[INST] Task: Check if there is unsafe content in '${role}' messages in conversations ` +
    "according to our safety policy with the below categories.\n\n" +
    "<BEGIN UNSAFE CONTENT CATEGORIES>\nS1: Violent Crimes.\nS2: Non-Violent Crimes.\n" +
    "S3: Sex Crimes.\nS4: Child Exploitation.\nS5: Specialized Advice.\nS6: Privacy.\n" +
    "S7: Hate.\nS8: Self-Harm.\n<END UNSAFE CONTENT CATEGORIES>\n\n" +
    `<BEGIN CONVERSATION>\n\n${turns}\n\n<END CONVERSATION>\n\n` +
    `Provide your safety assessment for ONLY THE LAST ${role} message in the above conversation:\n` +
    "- First line must read 'safe' or 'unsafe'.\n" +
    "- If unsafe, a second line must include a comma-separated list of violated categories. [/INST]"
  );
}

/**
 * Sends the conversation to the guard model through the router (greedy, a few tokens) and reads
 * its verdict with `unsafePattern`. Outputs are judged once the choice ended.
 */
export class LlmGuard implements Guard {
  private readonly unsafePattern: RegExp;
  private readonly maxTokens: number;
  private readonly template: GuardTemplate;

  constructor(private readonly opts: LlmGuardOptions) {
    this.unsafePattern = opts.unsafePattern ?? /^\s*unsafe/i;
    this.maxTokens = opts.maxTokens ?? 16;
    this.template = opts.template ?? "llama-guard";
  }

  checkInput(messages: readonly GuardMessage[]): Promise<GuardVerdict> {
    return this.judge(llamaGuardPrompt(messages, "User", this.template));
  }

  async checkOutput(
    messages: readonly GuardMessage[],
    output: string,
    isFinal: boolean,
  ): Promise<GuardVerdict> {
    if (!isFinal) return ALLOWED;
    const turns = [...messages, { role: "assistant", content: output }];
    return this.judge(llamaGuardPrompt(turns, "Agent", this.template));
  }

  /** The guard model's reply to `prompt`, greedy. */
  async reply(prompt: string): Promise<string> {
    const promptIds = await this.opts.codec.encodePrompt(prompt);
    const plan: GenerationPlan = {
      promptIds,
      n: 1,
      maxTokens: this.maxTokens,
      minTokens: 0,
      stops: [],
      stopTokenIds: [],
      ignoreEos: false,
      numTopLogprobs: null,
      sampling: GREEDY_SAMPLING,
    };
    const ctx = {
      router: this.opts.router,
      codec: this.opts.codec,
      signal: new AbortController().signal,
    };
    let text = "";
    const id = `guard-${randomBytes(8).toString("hex")}`;
    for await (const delta of generateChoices(ctx, plan, id, 0)) text += delta.text;
    return text;
  }

  /** Fails closed: a guard call that fails is a 503, never a pass. */
  private async judge(prompt: string): Promise<GuardVerdict> {
    let verdict: string;
    try {
      verdict = await this.reply(prompt);
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      throw new KilnError("UNAVAILABLE", `The content guard could not judge the request: ${why}`);
    }
    return this.unsafePattern.test(verdict)
      ? { isBlocked: true, reason: `guard model: ${verdict.split("\n")[0]!.trim()}` }
      : ALLOWED;
  }
}
