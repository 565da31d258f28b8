import {
  checkSampling,
  checkTokenIds,
  type GenerateRequest,
  type RegisterWorkerRequest,
} from "@kiln/proto";

/** The most parallel samples one Generate may ask for; the scheduler's maxNumSeqs bounds it too. */
export const MAX_N = 1024;
/** The longest request id (and cache salt) the router keeps. */
export const MAX_ID_LEN = 256;
/** The most stop token ids one request may carry. */
export const MAX_STOP_TOKEN_IDS = 1024;

/**
 * Checks of a Generate that need no replica, run before the router allocates anything sized by
 * the message (`n` sequences' output arrays). Null when valid, else the INVALID_ARGUMENT message.
 */
export function checkGenerateShape(req: GenerateRequest): string | null {
  if (req.promptTokenIds.length === 0) return "prompt_token_ids is empty";
  if (!(Number.isInteger(req.n) && req.n >= 0 && req.n <= MAX_N)) {
    return `n must be an integer in [1, ${MAX_N}], got ${req.n}`;
  }
  if (!(Number.isInteger(req.maxTokens) && req.maxTokens >= 0)) {
    return `max_tokens must be >= 0 (0 = up to the context length), got ${req.maxTokens}`;
  }
  if (!(Number.isInteger(req.minTokens) && req.minTokens >= 0)) {
    return `min_tokens must be >= 0, got ${req.minTokens}`;
  }
  if (req.requestId.length > MAX_ID_LEN) return `request_id is longer than ${MAX_ID_LEN}`;
  if (req.cacheSalt.length > MAX_ID_LEN) return `cache_salt is longer than ${MAX_ID_LEN}`;
  if (req.stopTokenIds.length > MAX_STOP_TOKEN_IDS) {
    return `stop_token_ids holds more than ${MAX_STOP_TOKEN_IDS} ids`;
  }
  return null;
}

/**
 * Checks of a Generate against the vocabulary of the replica it was routed to: every token id
 * (prompt, stop ids, logit bias keys) inside it, and sampling parameters the backend can use.
 * Null when valid. Run at admission, so a bad request never reaches a worker's step.
 */
export function checkGenerateForModel(req: GenerateRequest, vocabSize: number): string | null {
  return (
    checkTokenIds(req.promptTokenIds, vocabSize, "prompt_token_ids") ??
    checkTokenIds(req.stopTokenIds, vocabSize, "stop_token_ids") ??
    checkSampling(req.sampling, vocabSize)
  );
}

/** A host:port the router can dial; IPv6 hosts in brackets. */
const ADDRESS_PATTERN = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})$/;

/** Null when a RegisterWorker names a dialable address and sane ids. */
export function checkRegisterWorker(req: RegisterWorkerRequest): string | null {
  const match = ADDRESS_PATTERN.exec(req.address);
  const port = Number(match?.[2]);
  if (!match || port < 1 || port > 65535) {
    return `address must be host:port, got ${JSON.stringify(req.address.slice(0, MAX_ID_LEN))}`;
  }
  if (req.replicaId.length > MAX_ID_LEN || req.instanceId.length > MAX_ID_LEN) {
    return `replica_id and instance_id are at most ${MAX_ID_LEN} characters`;
  }
  if (req.role !== "" && req.role !== "draft") {
    return `role must be "" or "draft", got ${JSON.stringify(req.role.slice(0, MAX_ID_LEN))}`;
  }
  return null;
}
