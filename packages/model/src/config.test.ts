import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { STORIES_DIR } from "@kiln/test-support";
import { describe, expect, it } from "vitest";
import { makeTmpDir } from "../tests/helpers";
import { loadConfig, parseConfig } from "./config";
import { ModelError } from "./errors";

const BASE = {
  architectures: ["LlamaForCausalLM"],
  hidden_size: 64,
  intermediate_size: 128,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  vocab_size: 100,
  max_position_embeddings: 256,
  rms_norm_eps: 1e-5,
};

function expectConfigError(json: unknown, pattern: RegExp) {
  try {
    parseConfig(json);
  } catch (err) {
    expect(err).toBeInstanceOf(ModelError);
    expect((err as ModelError).code).toBe("INVALID_CONFIG");
    expect((err as ModelError).message).toMatch(pattern);
    return;
  }
  throw new Error("parseConfig accepted an invalid config");
}

describe("parseConfig", () => {
  it("applies defaults", () => {
    const c = parseConfig(BASE);
    expect(c).toMatchObject({
      architecture: "LlamaForCausalLM",
      numKvHeads: 4,
      headDim: 16,
      ropeTheta: 10000,
      ropeScaling: null,
      tieWordEmbeddings: false,
      attentionBias: false,
      bosTokenId: null,
      eosTokenIds: [],
      torchDtype: "float32",
      quantization: null,
    });
  });

  it("reads explicit fields and eos lists", () => {
    const c = parseConfig({
      ...BASE,
      num_key_value_heads: 2,
      head_dim: 32,
      rope_theta: 500000,
      tie_word_embeddings: true,
      bos_token_id: 1,
      eos_token_id: [2, 7],
      torch_dtype: "bfloat16",
    });
    expect(c).toMatchObject({ numKvHeads: 2, headDim: 32, ropeTheta: 500000 });
    expect(c).toMatchObject({ tieWordEmbeddings: true, bosTokenId: 1, eosTokenIds: [2, 7] });
    expect(c.torchDtype).toBe("bfloat16");
    expect(parseConfig({ ...BASE, eos_token_id: 2 }).eosTokenIds).toEqual([2]);
  });

  it("gives Qwen2 attention bias and accepts Mistral", () => {
    const qwen = parseConfig({ ...BASE, architectures: ["Qwen2ForCausalLM"] });
    expect(qwen.attentionBias).toBe(true);
    expect(parseConfig({ ...BASE, architectures: ["MistralForCausalLM"] }).architecture).toBe(
      "MistralForCausalLM",
    );
    expect(parseConfig({ ...BASE, attention_bias: true }).attentionBias).toBe(true);
  });

  it("falls back to model_type without architectures", () => {
    const { architectures: _, ...rest } = BASE;
    expect(parseConfig({ ...rest, model_type: "qwen2" }).architecture).toBe("Qwen2ForCausalLM");
    expectConfigError({ ...rest, model_type: "gpt2" }, /gpt2/);
  });

  it("parses llama3 and linear rope scaling under rope_type or type", () => {
    const llama3 = {
      rope_type: "llama3",
      factor: 8,
      low_freq_factor: 1,
      high_freq_factor: 4,
      original_max_position_embeddings: 8192,
    };
    expect(parseConfig({ ...BASE, rope_scaling: llama3 }).ropeScaling).toEqual({
      type: "llama3",
      factor: 8,
      lowFreqFactor: 1,
      highFreqFactor: 4,
      originalMaxPositionEmbeddings: 8192,
    });
    expect(
      parseConfig({ ...BASE, rope_scaling: { type: "linear", factor: 2 } }).ropeScaling,
    ).toEqual({ type: "linear", factor: 2 });
    expect(parseConfig({ ...BASE, rope_scaling: null }).ropeScaling).toBeNull();
  });

  it("rejects unknown rope scaling and incomplete llama3 scaling", () => {
    expectConfigError({ ...BASE, rope_scaling: { rope_type: "yarn", factor: 4 } }, /yarn/);
    expectConfigError(
      { ...BASE, rope_scaling: { rope_type: "llama3", factor: 8 } },
      /rope_scaling\.low_freq_factor/,
    );
  });

  it("names the unknown architecture", () => {
    expectConfigError({ ...BASE, architectures: ["GPT2LMHeadModel"] }, /GPT2LMHeadModel/);
  });

  it("names missing and mistyped fields", () => {
    const { hidden_size: _, ...noHidden } = BASE;
    expectConfigError(noHidden, /hidden_size/);
    expectConfigError({ ...BASE, num_attention_heads: "4" }, /num_attention_heads/);
    expectConfigError({ ...BASE, eos_token_id: "x" }, /eos_token_id/);
    expectConfigError({ ...BASE, num_key_value_heads: 3 }, /num_key_value_heads/);
    expectConfigError({ ...BASE, hidden_size: 66 }, /head_dim/);
    expectConfigError([], /root|expected object/);
  });
});

describe("loadConfig", () => {
  it("loads stories260K", async () => {
    const c = await loadConfig(STORIES_DIR);
    expect(c).toEqual({
      architecture: "LlamaForCausalLM",
      hiddenSize: 64,
      intermediateSize: 172,
      numLayers: 5,
      numHeads: 8,
      numKvHeads: 4,
      headDim: 8,
      vocabSize: 512,
      maxPositionEmbeddings: 512,
      rmsNormEps: 1e-5,
      ropeTheta: 10000,
      ropeScaling: null,
      tieWordEmbeddings: true,
      attentionBias: false,
      bosTokenId: 1,
      eosTokenIds: [2],
      torchDtype: "float32",
      quantization: null,
    });
  });

  it("reports a missing file as NOT_FOUND and bad JSON as INVALID_CONFIG", async () => {
    const { dir, cleanup } = await makeTmpDir();
    try {
      await expect(loadConfig(join(dir, "nope"))).rejects.toMatchObject({ code: "NOT_FOUND" });
      await mkdir(join(dir, "m"));
      await writeFile(join(dir, "m/config.json"), "{ not json");
      await expect(loadConfig(join(dir, "m"))).rejects.toMatchObject({ code: "INVALID_CONFIG" });
    } finally {
      await cleanup();
    }
  });
});
