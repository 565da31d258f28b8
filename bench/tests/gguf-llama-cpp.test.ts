import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadGolden, requireAvailable, STORIES_DIR } from "@kiln/test-support";
import type { LlamaModel, Token } from "node-llama-cpp";
import { readGgufFileInfo } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { tryLoadLlamaCpp } from "../src/baseline/load-llama";
import { exportLlamaToGguf } from "../src/gguf/export-llama";

/**
 * The baseline is only worth comparing against if llama.cpp runs the same model: the
 * exported stories260K must reproduce the golden greedy ids token for token, and llama.cpp's
 * tokenizer/detokenizer must agree with the golden prompt ids and text.
 */

const golden = loadGolden();

const loaded = await tryLoadLlamaCpp();
// Locally a missing llama.cpp binary skips (with the reason); under CI=true it fails.
requireAvailable(
  "node-llama-cpp's llama.cpp binary",
  loaded.llama !== null,
  `it cannot load: ${loaded.error}`,
);
if (loaded.error !== null) {
  console.warn(`SKIPPING llama.cpp tests: node-llama-cpp cannot load: ${loaded.error}`);
}

let workDir = "";
beforeAll(async () => {
  workDir = await mkdtemp(join(tmpdir(), "kiln-gguf-"));
});
afterAll(async () => {
  await rm(workDir, { recursive: true, force: true });
});

async function greedy(model: LlamaModel, promptIds: number[], numTokens: number) {
  const context = await model.createContext({ contextSize: 512, sequences: 1, threads: 1 });
  try {
    const out: number[] = [];
    const sequence = context.getSequence();
    const tokens = promptIds as Token[];
    for await (const t of sequence.evaluate(tokens, { temperature: 0, yieldEogToken: true })) {
      out.push(t);
      if (out.length >= numTokens) break;
    }
    return out;
  } finally {
    await context.dispose();
  }
}

describe("GGUF export of stories260K", () => {
  it("writes a header llama.cpp's GGUF reader parses: metadata and tensors", async () => {
    const path = join(workDir, "header.gguf");
    await exportLlamaToGguf(STORIES_DIR, path);
    const info = await readGgufFileInfo(path, { logWarnings: false });
    expect(info.version).toBe(3);
    const md = info.metadata as unknown as Record<string, Record<string, unknown>>;
    expect(md.general?.architecture).toBe("llama");
    expect(md.llama?.block_count).toBe(5);
    expect(md.llama?.embedding_length).toBe(64);
    const names = info.fullTensorInfo?.map((t) => t.name) ?? [];
    expect(names[0]).toBe("token_embd.weight");
    // Tied embeddings: no output.weight, llama.cpp falls back to token_embd.
    expect(names).not.toContain("output.weight");
    const q = info.fullTensorInfo?.find((t) => t.name === "blk.0.attn_q.weight");
    expect(q?.dimensions).toEqual([64, 64]);
    const k = info.fullTensorInfo?.find((t) => t.name === "blk.0.attn_k.weight");
    expect(k?.dimensions).toEqual([64, 32]);
  });
});

describe.skipIf(loaded.llama === null)("llama.cpp on the exported stories260K", () => {
  let model: LlamaModel;
  beforeAll(async () => {
    const path = join(workDir, "stories260K.gguf");
    await exportLlamaToGguf(STORIES_DIR, path);
    model = await loaded.llama!.loadModel({ modelPath: path });
  });
  afterAll(async () => {
    await model?.dispose();
  });

  it.each(golden.cases.map((c, i) => [i, c] as const))(
    "greedy case %i equals the golden ids",
    async (_i, c) => {
      expect(await greedy(model, c.prompt_ids, c.greedy_ids.length)).toEqual(c.greedy_ids);
    },
  );

  it("tokenizes the golden prompts and detokenizes the golden text", () => {
    for (const c of golden.cases) {
      expect(model.tokenize(c.prompt, false)).toEqual(c.prompt_ids.slice(1));
      expect(model.detokenize(c.greedy_ids as Token[])).toBe(c.greedy_text);
    }
  });

  it("tokenizes the same with scores derived from tokenizer.json's merges", async () => {
    const path = join(workDir, "stories260K-json-vocab.gguf");
    await exportLlamaToGguf(STORIES_DIR, path, { ignoreSentencePieceModel: true });
    const jsonModel = await loaded.llama!.loadModel({ modelPath: path });
    try {
      for (const c of golden.cases) {
        expect(jsonModel.tokenize(c.prompt, false)).toEqual(c.prompt_ids.slice(1));
        expect(jsonModel.tokenize(c.greedy_text, false)).toEqual(
          model.tokenize(c.greedy_text, false),
        );
      }
    } finally {
      await jsonModel.dispose();
    }
  });
});

describe.skipIf(loaded.llama === null)(
  "llama.cpp on stories260K exported as F16, BF16, Q8_0",
  () => {
    // ggml_type codes: F16 1, Q8_0 8, BF16 30 (ffn_down's 172-value rows stay F16 under Q8_0).
    const cases = [
      ["f16", 1, 1],
      ["bf16", 30, 30],
      ["q8_0", 8, 1],
    ] as const;
    it.each(cases)(
      "%s: typed matrices, F32 norms, and the golden ids token for token",
      async (type, matrixType, ffnDownType) => {
        const path = join(workDir, `stories260K-${type}.gguf`);
        await exportLlamaToGguf(STORIES_DIR, path, { tensorType: type });
        const info = await readGgufFileInfo(path, { logWarnings: false });
        const typeOf = (name: string) =>
          info.fullTensorInfo?.find((t) => t.name === name)?.ggmlType as number | undefined;
        expect(typeOf("blk.0.attn_q.weight")).toBe(matrixType);
        expect(typeOf("token_embd.weight")).toBe(matrixType);
        expect(typeOf("blk.0.ffn_down.weight")).toBe(ffnDownType);
        expect(typeOf("blk.0.attn_norm.weight")).toBe(0);
        const model = await loaded.llama!.loadModel({ modelPath: path });
        try {
          for (const c of golden.cases) {
            expect(await greedy(model, c.prompt_ids, c.greedy_ids.length)).toEqual(c.greedy_ids);
          }
        } finally {
          await model.dispose();
        }
      },
    );
  },
);
