import { loadConfig } from "@kiln/model";
import { LORA_A_DIR, STORIES_DIR } from "@kiln/test-support";
import { describe, expect, it } from "vitest";
import { buildApp } from "../src/app";
import { InFlight } from "../src/in-flight";
import { LoraRegistry, parseLoraModules } from "../src/lora/registry";
import { TOY_MODEL } from "./helpers/app";
import { FakeRouter } from "./helpers/fake-router";
import { toyCodec } from "./helpers/toy-codec";

// The gateway side of LoRA with a fake router: what each request sends, and the settings.

async function appWith(allowRuntimeLoraUpdating: boolean) {
  const lora = new LoraRegistry(TOY_MODEL.id, await loadConfig(STORIES_DIR), 64);
  await lora.load("lora-a", LORA_A_DIR);
  const router = new FakeRouter();
  const deps = {
    model: TOY_MODEL,
    codec: toyCodec,
    router,
    apiKeys: null,
    inFlight: new InFlight(),
  };
  return { app: buildApp({ ...deps, lora, allowRuntimeLoraUpdating }), router };
}

describe("gateway LoRA routes", () => {
  it("sends the adapter's name and path with the request, and the base model without", async () => {
    const { app, router } = await appWith(false);
    for (const model of ["lora-a", TOY_MODEL.id]) {
      const res = await app.inject({
        method: "POST",
        url: "/v1/completions",
        payload: { model, prompt: "hi", max_tokens: 2 },
      });
      expect(res.statusCode).toBe(200);
      expect(res.json().model).toBe(model);
    }
    expect(router.requests.map((r) => [r.adapter, r.adapterPath])).toEqual([
      ["lora-a", LORA_A_DIR],
      ["", ""],
    ]);
  });

  it("has no admin endpoints unless runtime updating is allowed", async () => {
    const off = (await appWith(false)).app;
    const payload = { lora_name: "x", lora_path: LORA_A_DIR };
    expect(
      (await off.inject({ method: "POST", url: "/v1/load_lora_adapter", payload })).statusCode,
    ).toBe(404);
    const on = (await appWith(true)).app;
    expect(
      (await on.inject({ method: "POST", url: "/v1/load_lora_adapter", payload })).statusCode,
    ).toBe(200);
    const base = { lora_name: TOY_MODEL.id, lora_path: LORA_A_DIR };
    expect(
      (await on.inject({ method: "POST", url: "/v1/load_lora_adapter", payload: base })).statusCode,
    ).toBe(400);
  });

  it("parses KILN_LORA_MODULES", () => {
    expect(parseLoraModules("a=/x/a, b=/y/b")).toEqual([
      { name: "a", path: "/x/a" },
      { name: "b", path: "/y/b" },
    ]);
    expect(parseLoraModules(undefined)).toEqual([]);
    expect(() => parseLoraModules("nopath")).toThrow(/name=path/);
  });
});
