import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "./config";
import { loadLoraAdapter, parseAdapterConfig } from "./lora";
import { writeRandomLoraAdapter } from "./random-lora";
import { SHARED_DIR } from "./random-model";
import type { LlamaConfig } from "./types";

const STORIES = join(SHARED_DIR, "models/stories260K");
const LORA_A = join(SHARED_DIR, "models/stories260K-lora-a");
let config: LlamaConfig;
let tmp: string;

beforeAll(async () => {
  config = await loadConfig(STORIES);
  tmp = await mkdtemp(join(tmpdir(), "kiln-lora-model-"));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** A copy of lora-a with adapter_config.json edited by `patch`. */
async function withConfig(name: string, patch: Record<string, unknown>): Promise<string> {
  const dir = join(tmp, name);
  await mkdir(dir, { recursive: true });
  const cfg = JSON.parse(await readFile(join(LORA_A, "adapter_config.json"), "utf8"));
  await writeFile(join(dir, "adapter_config.json"), JSON.stringify({ ...cfg, ...patch }));
  await copyFile(join(LORA_A, "adapter_model.safetensors"), join(dir, "adapter_model.safetensors"));
  return dir;
}

describe("loadLoraAdapter", () => {
  it("loads stories260K-lora-a: rank 8, scale alpha/r, all seven projections of every layer", async () => {
    const adapter = await loadLoraAdapter(LORA_A, config, 64);
    expect(adapter.rank).toBe(8);
    expect(adapter.scale).toBe(2);
    expect(adapter.layers).toHaveLength(config.numLayers);
    for (const layer of adapter.layers) expect(Object.keys(layer)).toHaveLength(7);
    expect(adapter.layers[0]!.gate_proj!.a).toHaveLength(8 * 64);
    expect(adapter.layers[0]!.gate_proj!.b).toHaveLength(172 * 8);
  });

  it("scales by alpha / sqrt(r) with use_rslora", () => {
    expect(parseAdapterConfig("d", { r: 16, lora_alpha: 8, use_rslora: true }, 64).scale).toBe(2);
    expect(parseAdapterConfig("d", { r: 16, lora_alpha: 8 }, 64).scale).toBe(0.5);
  });

  it("names what it cannot serve", async () => {
    await expect(loadLoraAdapter(LORA_A, config, 4)).rejects.toThrow(
      /rank 8 is above max_lora_rank 4/,
    );
    const embed = await withConfig("embed", { target_modules: ["q_proj", "embed_tokens"] });
    await expect(loadLoraAdapter(embed, config, 64)).rejects.toThrow(
      /unsupported target modules embed_tokens/,
    );
    const saved = await withConfig("saved", { modules_to_save: ["lm_head"] });
    await expect(loadLoraAdapter(saved, config, 64)).rejects.toThrow(/modules_to_save \(lm_head\)/);
    const wrongRank = await withConfig("wrong-rank", { r: 4 });
    await expect(loadLoraAdapter(wrongRank, config, 64)).rejects.toThrow(
      /has shape \[8, 172\], the base model needs \[4, 172\]/,
    );
  });

  it("rejects an adapter made for another model's shapes", async () => {
    const other = { ...config, hiddenSize: 32 };
    const dir = join(tmp, "other");
    await writeRandomLoraAdapter(dir, other, { rank: 2, seed: 1 });
    await expect(loadLoraAdapter(dir, config, 64)).rejects.toThrow(/the base model needs/);
  });

  it("reports a missing directory, a missing file and a corrupt file", async () => {
    await expect(loadLoraAdapter(join(tmp, "nope"), config, 64)).rejects.toMatchObject({
      code: "NOT_FOUND",
    });
    const noWeights = join(tmp, "no-weights");
    await mkdir(noWeights);
    await copyFile(join(LORA_A, "adapter_config.json"), join(noWeights, "adapter_config.json"));
    await expect(loadLoraAdapter(noWeights, config, 64)).rejects.toMatchObject({
      code: "NOT_FOUND",
    });
    const corrupt = await withConfig("corrupt", {});
    const bytes = await readFile(join(corrupt, "adapter_model.safetensors"));
    await writeFile(join(corrupt, "adapter_model.safetensors"), bytes.subarray(0, 1000));
    await expect(loadLoraAdapter(corrupt, config, 64)).rejects.toMatchObject({
      code: "INVALID_CHECKPOINT",
    });
    const badJson = await withConfig("bad-json", {});
    await writeFile(join(badJson, "adapter_config.json"), "{ nope");
    await expect(loadLoraAdapter(badJson, config, 64)).rejects.toMatchObject({
      code: "INVALID_ADAPTER",
    });
  });
});
