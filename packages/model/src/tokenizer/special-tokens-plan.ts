import type { Tokenizer as NativeTokenizer } from "tokenizers";
import { ModelError } from "../errors";
import type { TokenizerSettings } from "./tokenizer-settings";

/**
 * How `encode` adds special tokens. transformers' Llama tokenizers rebuild tokenizer.json's
 * post-processor from add_bos_token / add_eos_token; a tokenizer.json may or may not carry a
 * TemplateProcessing that agrees, so the flags win and the post-processor is used only when
 * it already does exactly what they ask (then other templates, e.g. Llama-3's, still work).
 */
export interface SpecialTokensPlan {
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | null;
  /** Effective flags: the config's, or what the post-processor does when it is silent. */
  readonly addBosToken: boolean;
  readonly addEosToken: boolean;
  /** True: let the native post-processor add special tokens. False: add BOS/EOS by hand to
   * an encoding made without them. */
  readonly isNative: boolean;
}

/** Resolves special-token ids and decides how to add them. Throws ModelError
 * ("INVALID_CONFIG") when the config names a special token the vocabulary lacks. */
export async function planSpecialTokens(
  native: NativeTokenizer,
  settings: TokenizerSettings,
  path: string,
): Promise<SpecialTokensPlan> {
  const bosTokenId = resolveToken(native, settings.bosToken, "bos_token", path);
  const eosTokenId = resolveToken(native, settings.eosToken, "eos_token", path);
  // What the post-processor adds, seen on an empty text.
  const probe = (await native.encode("", null, { addSpecialTokens: true })).getIds();
  const isNativeBos = bosTokenId !== null && probe[0] === bosTokenId;
  const numAfterBos = probe.length - (isNativeBos ? 1 : 0);
  const isNativeEos = eosTokenId !== null && numAfterBos > 0 && probe.at(-1) === eosTokenId;
  const addBosToken = (settings.addBosToken ?? isNativeBos) && bosTokenId !== null;
  const addEosToken = (settings.addEosToken ?? isNativeEos) && eosTokenId !== null;
  const isConfigSilent = settings.addBosToken === null && settings.addEosToken === null;
  const expected = [
    ...(addBosToken && bosTokenId !== null ? [bosTokenId] : []),
    ...(addEosToken && eosTokenId !== null ? [eosTokenId] : []),
  ];
  const isNative = isConfigSilent || sameIds(probe, expected);
  return { bosTokenId, eosTokenId, addBosToken, addEosToken, isNative };
}

function resolveToken(
  native: NativeTokenizer,
  token: string | null,
  field: string,
  path: string,
): number | null {
  if (token === null) return null;
  const id = native.tokenToId(token);
  if (id === null) {
    throw new ModelError("INVALID_CONFIG", `${path}: ${field} "${token}" is not in the vocabulary`);
  }
  return id;
}

function sameIds(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((id, i) => id === b[i]);
}
