/**
 * Draft-model speculative decoding (ADR 0017) through a real router, a real stories260K target
 * worker and a real draft worker (`--role draft`, stories260K drafting for itself): the draft
 * worker alone proposes the target's greedy continuation; through the router the goldens stay
 * exact alone and 16 at once with nearly every draft accepted; the draft's KV blocks come back;
 * and a draft worker that dies leaves the target serving without drafts.
 */
import { freePort, loadGolden, scrapeSum, waitFor } from "@kiln/test-support";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DraftWorker } from "../src/draft-worker";
import { WorkerConnection } from "../src/worker-connection";
import { expectGoldenCase, expectSpeculatedGoldenStreams } from "./golden-streams";
import { type ServiceProcess, startRouter, startWorker, waitForHealthyReplicas } from "./processes";
import { TestRouterClient } from "./router-client";

const golden = loadGolden();
const K = 4;
const DRAFT_CONFIG = JSON.stringify({
  method: "draft_model",
  model: "stories260K",
  num_speculative_tokens: K,
  adaptive: false,
});

describe("a draft worker stepped directly", () => {
  let router: ServiceProcess;
  let worker: ServiceProcess;
  let connection: WorkerConnection;

  beforeAll(async () => {
    router = await startRouter();
    worker = await startWorker(router.port, null, ["--role", "draft"]);
    connection = new WorkerConnection(`127.0.0.1:${worker.port}`);
  }, 90_000);

  afterAll(async () => {
    connection?.close();
    await worker?.stop();
    await router?.stop();
  });

  it("proposes the greedy continuation, catches up after rejections and frees its blocks", async () => {
    const info = await connection.info(5000);
    const draft = new DraftWorker(connection, info, 10_000);
    const c = golden.cases[0]!;
    const tokens = [...c.prompt_ids];
    const seqId = 7;
    // Accept every draft for a while: each round's drafts are the next greedy tokens.
    for (let round = 0; round < 5; round++) {
      await draft.propose([{ seqId, tokenIds: tokens, maxDrafts: K }], [seqId]);
      const drafts = draft.draftsFor(seqId, tokens, K);
      const at = tokens.length - c.prompt_ids.length;
      expect(drafts).toEqual(c.greedy_ids.slice(at, at + K));
      tokens.push(...drafts);
    }
    // A rejection: the sequence continues with a token the draft did not propose.
    tokens.push((c.greedy_ids[tokens.length - c.prompt_ids.length]! + 1) % info.vocabSize);
    await draft.propose([{ seqId, tokenIds: tokens, maxDrafts: 2 }], [seqId]);
    expect(draft.draftsFor(seqId, tokens, 2)).toHaveLength(2);
    // A changed sequence gets no stale drafts; a sequence that stopped running is dropped.
    expect(draft.draftsFor(seqId, [...tokens, 1], 2)).toEqual([]);
    expect(draft.numFreeBlocks).toBeLessThan(info.numBlocks);
    await draft.propose([], []);
    expect(draft.numSequences).toBe(0);
    expect(draft.numFreeBlocks).toBe(info.numBlocks);
  });
});

describe("draft-model speculative decoding, router + target + draft worker processes", () => {
  let router: ServiceProcess;
  let target: ServiceProcess;
  let draft: ServiceProcess | undefined;
  let client: TestRouterClient;
  let metricsPort: number;
  const counter = (name: string) => scrapeSum(metricsPort, `kiln_spec_decode_${name}_total`);

  beforeAll(async () => {
    metricsPort = await freePort();
    router = await startRouter([
      ...["--metrics-port", `${metricsPort}`],
      ...["--speculative-config", DRAFT_CONFIG],
    ]);
    [target, draft] = await Promise.all([
      startWorker(router.port, null),
      startWorker(router.port, null, ["--role", "draft"]),
    ]);
    client = new TestRouterClient(router.port);
    await waitForHealthyReplicas(client, 1);
    // The draft registers within a second of starting; drafts then appear.
    await waitFor(
      async () => {
        const c = golden.cases[0]!;
        await client.generate({ promptTokenIds: c.prompt_ids, maxTokens: 8, ignoreEos: true });
        return (await counter("num_draft_tokens")) > 0;
      },
      "the draft worker attached",
      { timeoutMs: 20_000 },
    );
  }, 90_000);

  afterAll(async () => {
    client?.close();
    await draft?.stop();
    await target?.stop();
    await router?.stop();
  });

  it("reproduces every golden alone, nearly every draft accepted", async () => {
    const drafted = await counter("num_draft_tokens");
    const accepted = await counter("num_accepted_tokens");
    for (const c of golden.cases) await expectGoldenCase(client, c);
    const numDrafted = (await counter("num_draft_tokens")) - drafted;
    const numAccepted = (await counter("num_accepted_tokens")) - accepted;
    // Up to K drafts per step: far fewer target steps than tokens.
    const numTokens = golden.cases.reduce((n, c) => n + c.greedy_ids.length, 0);
    expect(numDrafted).toBeGreaterThan(numTokens / 2);
    expect(numAccepted / numDrafted).toBeGreaterThan(0.95);
    expect(
      await scrapeSum(metricsPort, "kiln_spec_decode_num_accepted_tokens_per_pos_total", {
        position: String(K - 1),
      }),
    ).toBeGreaterThan(0);
  });

  it("reproduces the goldens 16 at once and frees every block", async () => {
    await expectSpeculatedGoldenStreams(client, metricsPort);
  }, 60_000);

  it("a stream cancelled mid-speculation leaks no blocks", async () => {
    const c = golden.cases[1]!;
    const result = await client.generate(
      { promptTokenIds: c.prompt_ids, maxTokens: 400, ignoreEos: true },
      (numTokens) => numTokens >= 100,
    );
    expect(result.error).toBe("cancelled");
    await waitFor(
      async () => (await client.stats()).replicas[0]!.numUsedBlocks === 0,
      "every block free after the cancel",
      { timeoutMs: 5000 },
    );
  });

  it("when the draft worker dies the target keeps serving exactly, without drafts", async () => {
    await draft!.kill();
    draft = undefined;
    const c = golden.cases[2 % golden.cases.length]!;
    await expectGoldenCase(client, c);
    const drafted = await counter("num_draft_tokens");
    await client.generate({ promptTokenIds: c.prompt_ids, maxTokens: 40, ignoreEos: true });
    expect(await counter("num_draft_tokens")).toBe(drafted);
  });
});
