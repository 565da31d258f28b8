import type { TextCodec } from "../../src/text-codec";

/** Ids of the toy vocabulary: 0 unk, 1 BOS, 2 EOS, then one id per ASCII character. */
export const BOS = 1;
export const EOS = 2;
const FIRST_CHAR_ID = 3;
export const TOY_VOCAB_SIZE = FIRST_CHAR_ID + 128;

export function charId(ch: string): number {
  return FIRST_CHAR_ID + (ch.codePointAt(0)! & 0x7f);
}

function idText(id: number): string {
  return id >= FIRST_CHAR_ID ? String.fromCharCode(id - FIRST_CHAR_ID) : "";
}

/** A character-level TextCodec: enough to test the gateway without a real tokenizer. */
export const toyCodec: TextCodec = {
  vocabSize: TOY_VOCAB_SIZE,
  encodePrompt: async (text, opts) => [
    ...(opts?.addSpecialTokens === false ? [] : [BOS]),
    ...[...text].map(charId),
  ],
  encodeChat: async (messages, opts) => {
    const tools = opts?.tools?.length ? `tools: ${JSON.stringify(opts.tools)}\n` : "";
    const cue = opts?.addGenerationPrompt === false ? "" : "assistant:";
    const text = tools + messages.map((m) => `${m.role}: ${m.content}\n`).join("") + cue;
    return [BOS, ...[...text].map(charId)];
  },
  decode: (ids) => ids.map(idText).join(""),
  createDetokenizer: () => {
    let isFlushed = false;
    return {
      push: (ids) => {
        if (isFlushed) throw new Error("push after flush");
        return ids.map(idText).join("");
      },
      flush: () => {
        isFlushed = true;
        return "";
      },
    };
  },
  tokenPiece: (id) => {
    const text = id === BOS ? "<s>" : id === EOS ? "</s>" : idText(id);
    return { text, bytes: [...Buffer.from(text)] };
  },
};
