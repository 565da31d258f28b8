import type { Check } from "../check";
import { CHAT_CHECKS } from "./chat";
import { COMPLETION_CHECKS } from "./completions";
import { EMBEDDING_CHECKS } from "./embeddings";
import { EXTENSION_CHECKS } from "./extensions";
import { MODEL_CHECKS } from "./models";
import { RESPONSES_CHECKS } from "./responses";

/** Every check, in report order. */
export const ALL_CHECKS: readonly Check[] = [
  ...MODEL_CHECKS,
  ...CHAT_CHECKS,
  ...COMPLETION_CHECKS,
  ...RESPONSES_CHECKS,
  ...EMBEDDING_CHECKS,
  ...EXTENSION_CHECKS,
];
