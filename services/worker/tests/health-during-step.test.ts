import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { credentials, Metadata } from "@grpc/grpc-js";
import { writeRandomModel } from "@kiln/model";
import { StepRequest, type StepResponse, WorkerClient } from "@kiln/proto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ServiceProcess, startService } from "../../router/tests/processes";

// Big enough that one long prefill keeps the backend busy for a good fraction of a second.
const SHAPE = {
  hiddenSize: 512,
  numLayers: 4,
  numHeads: 8,
  numKvHeads: 8,
  intermediateSize: 1536,
  vocabSize: 32000,
  maxPositionEmbeddings: 1024,
};
const PROMPT_LEN = 1000;
const BLOCK_SIZE = 16;

describe("a worker process during a long step", () => {
  let modelDir: string;
  let worker: ServiceProcess;
  let client: WorkerClient;

  beforeAll(async () => {
    modelDir = await mkdtemp(join(tmpdir(), "kiln-worker-health-"));
    await writeRandomModel(modelDir, SHAPE, { seed: 1 });
    worker = await startService("worker", ["--model", modelDir, "--kv-cache-memory", "64MiB"]);
    client = new WorkerClient(`127.0.0.1:${worker.port}`, credentials.createInsecure());
  }, 120_000);

  afterAll(async () => {
    client?.close();
    await worker?.stop();
    if (modelDir) await rm(modelDir, { recursive: true, force: true });
  });

  it("answers Health promptly while Step computes", async () => {
    const promptIds = Array.from({ length: PROMPT_LEN }, (_, i) => 1 + ((i * 7919) % 31999));
    const step = StepRequest.fromPartial({
      stepId: 1,
      reset: true,
      newSequences: [{ seqId: 1, promptTokenIds: promptIds, sampling: { topP: 1 } }],
      sequences: [
        {
          seqId: 1,
          tokenIds: promptIds,
          numComputedTokens: 0,
          newBlockIds: Array.from({ length: Math.ceil(PROMPT_LEN / BLOCK_SIZE) }, (_, i) => i),
          doSample: true,
        },
      ],
    });
    let isStepDone = false;
    const stepStartedAt = Date.now();
    const stepDone = new Promise<StepResponse>((resolve, reject) => {
      client.step(step, new Metadata(), (err, res) => {
        isStepDone = true;
        if (err) reject(err);
        else resolve(res);
      });
    });
    const healthLatenciesMs: number[] = [];
    while (!isStepDone) {
      const startedAt = Date.now();
      await new Promise<void>((resolve, reject) => {
        client.health({}, (err, res) => (err || !res.serving ? reject(err) : resolve()));
      });
      if (!isStepDone) healthLatenciesMs.push(Date.now() - startedAt);
      await new Promise((r) => setTimeout(r, 10));
    }
    const response = await stepDone;
    const stepMs = Date.now() - stepStartedAt;
    expect(response.results).toHaveLength(1);
    // Several health checks answered during the step, each far quicker than the step itself.
    expect(healthLatenciesMs.length).toBeGreaterThanOrEqual(3);
    expect(Math.max(...healthLatenciesMs)).toBeLessThan(Math.max(100, stepMs / 4));
  }, 60_000);
});
