/**
 * Speculative decoding with n-gram (prompt lookup) drafts through a real router and a real
 * stories260K worker (ADR 0017): greedy goldens stay exact alone and 16 at once, the spec-decode
 * counters show drafts verified and accepted, an opted-out request drafts nothing, and a stream
 * cancelled while verification steps run leaves every block free.
 */
import { SamplingParams } from "@kiln/proto";
import { freePort, loadGolden, scrapeSum, waitFor } from "@kiln/test-support";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectGoldenCase, expectSpeculatedGoldenStreams } from "./golden-streams";
import { type ServiceProcess, startRouter, startWorker, waitForHealthyReplicas } from "./processes";
import { TestRouterClient } from "./router-client";

const golden = loadGolden();
const NGRAM_CONFIG = JSON.stringify({
  method: "ngram",
  num_speculative_tokens: 4,
  prompt_lookup_min: 1,
  prompt_lookup_max: 3,
  adaptive: false,
});

describe("n-gram speculative decoding, router + worker processes", () => {
  let router: ServiceProcess;
  let worker: ServiceProcess;
  let client: TestRouterClient;
  let metricsPort: number;
  const counter = (name: string) => scrapeSum(metricsPort, `kiln_spec_decode_${name}_total`);

  beforeAll(async () => {
    metricsPort = await freePort();
    router = await startRouter([
      ...["--metrics-port", `${metricsPort}`],
      ...["--speculative-config", NGRAM_CONFIG],
    ]);
    worker = await startWorker(router.port, null);
    client = new TestRouterClient(router.port);
    await waitForHealthyReplicas(client, 1);
  }, 90_000);

  afterAll(async () => {
    client?.close();
    await worker?.stop();
    await router?.stop();
  });

  it("reproduces every golden alone, with drafts verified and accepted", async () => {
    for (const c of golden.cases) await expectGoldenCase(client, c);
    expect(await counter("num_drafts")).toBeGreaterThan(0);
    expect(await counter("num_draft_tokens")).toBeGreaterThan(0);
    expect(await counter("num_accepted_tokens")).toBeGreaterThan(0);
    expect(
      await scrapeSum(metricsPort, "kiln_spec_decode_num_accepted_tokens_per_pos_total", {
        position: "0",
      }),
    ).toBeGreaterThan(0);
  });

  it("reproduces the goldens 16 at once and frees every block", async () => {
    await expectSpeculatedGoldenStreams(client, metricsPort);
  }, 60_000);

  it('an opted-out request ("speculative": false) drafts nothing and matches its golden', async () => {
    const c = golden.cases[0]!;
    const before = await counter("num_draft_tokens");
    const result = await client.generate({
      promptTokenIds: c.prompt_ids,
      maxTokens: c.greedy_ids.length,
      ignoreEos: true,
      disableSpeculation: true,
    });
    expect(result.tokenIds).toEqual(c.greedy_ids);
    expect(await counter("num_draft_tokens")).toBe(before);
  });

  it("a seeded sampled request emits the same tokens with and without speculation", async () => {
    const c = golden.cases[1]!;
    const request = {
      promptTokenIds: c.prompt_ids,
      maxTokens: 80,
      ignoreEos: true,
      sampling: SamplingParams.fromPartial({ temperature: 0.8, topP: 0.95, seed: 7 }),
    };
    const before = await counter("num_draft_tokens");
    const spec = await client.generate(request);
    expect(await counter("num_draft_tokens")).toBeGreaterThan(before);
    const plain = await client.generate({ ...request, disableSpeculation: true });
    expect(spec.error).toBeNull();
    expect(spec.tokenIds).toEqual(plain.tokenIds);
    expect(spec.tokenIds).toHaveLength(80);
  });

  it("a stream cancelled during verification steps leaks no blocks", async () => {
    const c = golden.cases[0]!;
    const drafts = await counter("num_draft_tokens");
    // Long enough that steps run back to back (stories260K loops, so drafts are accepted).
    const result = await client.generate(
      { promptTokenIds: c.prompt_ids, maxTokens: 400, ignoreEos: true },
      (numTokens) => numTokens >= 120,
    );
    expect(result.error).toBe("cancelled");
    expect(await counter("num_draft_tokens")).toBeGreaterThan(drafts);
    await waitFor(
      async () => (await client.stats()).replicas[0]!.numUsedBlocks === 0,
      "every block free after the cancel",
      { timeoutMs: 5000 },
    );
    // The replica still serves, exactly.
    await expectGoldenCase(client, c);
  });
});
