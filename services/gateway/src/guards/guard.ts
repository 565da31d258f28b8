import { KilnError } from "@kiln/proto";
import type { ChoiceDelta } from "../generation";

/** A message of the conversation a guard judges (text only). */
export interface GuardMessage {
  readonly role: string;
  readonly content: string;
}

export interface GuardVerdict {
  readonly isBlocked: boolean;
  /** Why (a rule's name or the guard model's verdict line); never shown with the text. */
  readonly reason: string;
}

/**
 * An input/output content guard (KILN_GUARD). `checkInput` sees the conversation before
 * generation; `checkOutput` sees it plus one choice's text so far. `isFinal` is true once the
 * choice ended; a guard that is costly to run (the LLM guard) judges only then.
 */
export interface Guard {
  checkInput(messages: readonly GuardMessage[]): Promise<GuardVerdict>;
  checkOutput(
    messages: readonly GuardMessage[],
    output: string,
    isFinal: boolean,
  ): Promise<GuardVerdict>;
}

export const ALLOWED: GuardVerdict = { isBlocked: false, reason: "" };

/** Runs guards in order; the first block wins. */
export function combineGuards(guards: readonly Guard[]): Guard | null {
  if (guards.length === 0) return null;
  if (guards.length === 1) return guards[0]!;
  return {
    async checkInput(messages) {
      for (const g of guards) {
        const v = await g.checkInput(messages);
        if (v.isBlocked) return v;
      }
      return ALLOWED;
    },
    async checkOutput(messages, output, isFinal) {
      for (const g of guards) {
        const v = await g.checkOutput(messages, output, isFinal);
        if (v.isBlocked) return v;
      }
      return ALLOWED;
    },
  };
}

/** Throws CONTENT_FILTER (400) when the guard blocks the input. */
export async function guardInput(guard: Guard | null, messages: readonly GuardMessage[]) {
  if (guard === null) return;
  const verdict = await guard.checkInput(messages);
  if (verdict.isBlocked) {
    throw new KilnError(
      "CONTENT_FILTER",
      "The request was blocked by the content filter (input guard).",
      "messages",
    );
  }
}

/**
 * Passes deltas through the output guard: a choice the guard blocks ends there with
 * `finish_reason: "content_filter"` and an empty text for the blocking delta; its later deltas
 * are dropped. Tokens of the blocking delta are kept for usage.
 */
export async function* guardOutput(
  guard: Guard | null,
  messages: readonly GuardMessage[],
  deltas: AsyncGenerator<ChoiceDelta>,
): AsyncGenerator<ChoiceDelta> {
  if (guard === null) {
    yield* deltas;
    return;
  }
  const indexToText = new Map<number, string>();
  const blocked = new Set<number>();
  for await (const delta of deltas) {
    if (blocked.has(delta.index)) continue;
    const text = (indexToText.get(delta.index) ?? "") + delta.text;
    indexToText.set(delta.index, text);
    const verdict = await guard.checkOutput(messages, text, delta.finishReason !== null);
    if (verdict.isBlocked) {
      blocked.add(delta.index);
      yield { ...delta, text: "", finishReason: "content_filter" };
      continue;
    }
    yield delta;
  }
}
