import { describe, expect, it } from "vitest";
import { defaultServedName, parseGatewayOptions } from "./options";

describe("parseGatewayOptions", () => {
  it("lets flags win over env and env over defaults", () => {
    const env = { KILN_MODEL: "/m/stories260K/", KILN_ROUTER_ADDRESS: "r:1", PORT: "9000" };
    expect(parseGatewayOptions([], env)).toMatchObject({
      host: "127.0.0.1",
      port: 9000,
      routerAddress: "r:1",
      servedModelName: "stories260K",
      apiKeys: null,
      drainTimeoutMs: 30_000,
    });
    const flags = [
      "--port",
      "0",
      "--router",
      "x:2",
      "--served-model-name",
      "m",
      "--drain-timeout",
      "1",
    ];
    expect(parseGatewayOptions(flags, { ...env, KILN_API_KEYS: "a, b," })).toMatchObject({
      port: 0,
      routerAddress: "x:2",
      servedModelName: "m",
      apiKeys: ["a", "b"],
      drainTimeoutMs: 1000,
    });
  });

  it("names what is missing or malformed", () => {
    expect(() => parseGatewayOptions([], { KILN_ROUTER_ADDRESS: "r:1" })).toThrow(/KILN_MODEL/);
    expect(() => parseGatewayOptions([], { KILN_MODEL: "m" })).toThrow(/--router/);
    expect(() =>
      parseGatewayOptions(["--port", "-1"], { KILN_MODEL: "m", KILN_ROUTER_ADDRESS: "r:1" }),
    ).toThrow(/--port/);
  });

  it("reads the request timeout from --request-timeout or KILN_REQUEST_TIMEOUT_S (0 = none)", () => {
    const env = { KILN_MODEL: "m", KILN_ROUTER_ADDRESS: "r:1" };
    expect(parseGatewayOptions([], env).requestTimeoutMs).toBeNull();
    expect(
      parseGatewayOptions([], { ...env, KILN_REQUEST_TIMEOUT_S: "2.5" }).requestTimeoutMs,
    ).toBe(2500);
    const flags = ["--request-timeout", "0"];
    expect(
      parseGatewayOptions(flags, { ...env, KILN_REQUEST_TIMEOUT_S: "9" }).requestTimeoutMs,
    ).toBe(null);
    expect(() => parseGatewayOptions(["--request-timeout", "-1"], env)).toThrow(
      /--request-timeout/,
    );
  });

  it("takes metrics upstreams from repeated flags or a comma-separated variable", () => {
    const env = { KILN_MODEL: "m", KILN_ROUTER_ADDRESS: "r:1" };
    expect(parseGatewayOptions([], env).metricsUpstreams).toEqual([]);
    const urls = ["http://127.0.0.1:9401/metrics", "http://127.0.0.1:9402/metrics"];
    const flags = urls.flatMap((u) => ["--metrics-upstream", u]);
    expect(parseGatewayOptions(flags, env).metricsUpstreams).toEqual(urls);
    const fromEnv = { ...env, KILN_METRICS_UPSTREAMS: `${urls.join(", ")},` };
    expect(parseGatewayOptions([], fromEnv).metricsUpstreams).toEqual(urls);
    expect(() => parseGatewayOptions(["--metrics-upstream", "127.0.0.1:9401"], env)).toThrow(
      /--metrics-upstream/,
    );
  });

  it("serves a Hub repo under its id and a directory under its name", () => {
    expect(defaultServedName("TinyLlama/TinyLlama-1.1B")).toBe("TinyLlama/TinyLlama-1.1B");
    expect(defaultServedName("../shared/models/stories260K")).toBe("stories260K");
  });
});
