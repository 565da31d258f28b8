import type OpenAI from "openai";
import type { JsonReply, Target } from "./http";
import { assertSchema } from "./validate";

export type CheckStatus = "pass" | "fail" | "unsupported";

export interface CheckContext {
  readonly target: Target;
  /** The official client, pointed at `${origin}/v1`. */
  readonly client: OpenAI;
}

/** One conformance check: an endpoint, a documented parameter or behaviour. */
export interface Check {
  /** Stable id, `<area>.<what>` (used by allowlists). */
  readonly id: string;
  readonly endpoint: string;
  readonly title: string;
  run(ctx: CheckContext): Promise<void>;
}

export interface CheckResult {
  readonly id: string;
  readonly endpoint: string;
  readonly title: string;
  readonly status: CheckStatus;
  readonly detail: string;
  readonly ms: number;
}

/** Thrown by a check when the server clearly declines the feature (a 4xx OpenAI error). */
export class Unsupported extends Error {}

/**
 * A reply to a request for an optional feature: a 200 continues the check; a well-formed
 * 400/404/422/501 error means the server does not support it (the check is "unsupported");
 * anything else fails.
 */
export function requireSupported(reply: JsonReply, what: string): void {
  if (reply.status === 200) return;
  if ([400, 404, 422, 501].includes(reply.status)) {
    assertSchema("ErrorResponse", reply.body, `${what} error`);
    const message = (reply.body as { error: { message: string } }).error.message;
    throw new Unsupported(`${reply.status}: ${message}`);
  }
  throw new Error(`${what}: HTTP ${reply.status} ${JSON.stringify(reply.body).slice(0, 200)}`);
}

export function expectStatus(reply: JsonReply, status: number, what: string): void {
  if (reply.status !== status) {
    throw new Error(
      `${what}: expected HTTP ${status}, got ${reply.status} ${JSON.stringify(reply.body).slice(0, 200)}`,
    );
  }
}

export function expect(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(message);
}
