import type { ServerUnaryCall, ServiceError, sendUnaryData } from "@grpc/grpc-js";
import { Metadata, status } from "@grpc/grpc-js";
import type { Backend, StepInput, StepOutput } from "@kiln/kernels";
import {
  type HealthResponse,
  StepRequest,
  type StepResponse,
  type WorkerServer,
} from "@kiln/proto";
import { describe, expect, it } from "vitest";
import { createWorkerService } from "./worker-service";

const INSTANCE = "instance-1";

/** A backend that records its inputs; steps answer token 3 per sample unless held. */
class FakeBackend implements Backend {
  readonly info = {
    name: "cpu" as const,
    numBlocks: 8,
    blockSize: 4,
    vocabSize: 16,
    maxModelLen: 32,
  };
  readonly inputs: StepInput[] = [];
  dead: string | null = null;
  isWedged = false;

  step(input: StepInput): Promise<StepOutput> {
    this.inputs.push(input);
    if (this.isWedged) return new Promise(() => {});
    const sampled = input.samples.map((s) =>
      s ? { tokenId: 3, logprob: -0.5, topLogprobs: [] } : null,
    );
    return Promise.resolve({ sampled });
  }

  deadReason(): string | null {
    return this.dead;
  }

  dispose(): Promise<void> {
    return Promise.resolve();
  }
}

function serviceWith(backend: FakeBackend, maxStepMs = 60_000): WorkerServer {
  const identity = { workerId: "w", instanceId: INSTANCE, model: "m", eosTokenIds: [] };
  return createWorkerService(backend, identity, () => {}, null, maxStepMs);
}

type StepPartial = Parameters<typeof StepRequest.fromPartial>[0];

function step(service: WorkerServer, partial: StepPartial) {
  return new Promise<{ err: ServiceError | null; res: StepResponse | undefined }>((resolve) => {
    const call = { request: StepRequest.fromPartial(partial), metadata: new Metadata() };
    const callback: sendUnaryData<StepResponse> = (err, res) =>
      resolve({ err: err as ServiceError | null, res: res ?? undefined });
    service.step(call as unknown as ServerUnaryCall<StepRequest, StepResponse>, callback);
  });
}

function health(service: WorkerServer): Promise<boolean> {
  return new Promise((resolve) => {
    const callback: sendUnaryData<HealthResponse> = (_err, res) => resolve(res?.serving ?? false);
    service.health({} as Parameters<WorkerServer["health"]>[0], callback);
  });
}

const prefill = (seqId: number, prompt: number[], blocks: number[]) => ({
  newSequences: [{ seqId, promptTokenIds: prompt, sampling: { topP: 1 } }],
  sequences: [
    { seqId, tokenIds: prompt, numComputedTokens: 0, newBlockIds: blocks, doSample: true },
  ],
});

describe("the worker service refuses bad steps before changing anything", () => {
  it("INVALID_ARGUMENT for a stale instance, a stale step id, an unknown sequence or a bad block", async () => {
    const backend = new FakeBackend();
    const service = serviceWith(backend);
    const ok = await step(service, {
      stepId: 5,
      reset: true,
      instanceId: INSTANCE,
      ...prefill(1, [1, 2], [0]),
    });
    expect(ok.err).toBeNull();
    const bad: StepPartial[] = [
      { stepId: 6, instanceId: "an-old-instance", ...prefill(2, [1], [1]) },
      { stepId: 5, ...prefill(2, [1], [1]) },
      {
        stepId: 6,
        sequences: [
          {
            seqId: 9,
            tokenIds: [1],
            numComputedTokens: 0,
            newBlockIds: [1],
            doSample: false,
            outputIndex: 0,
            bannedTokenIds: [],
          },
        ],
      },
      { stepId: 6, ...prefill(2, [1], [8]) },
      { stepId: 6, ...prefill(2, [1, 2, 3, 4, 5], [1]) },
      { stepId: 6, blockCopies: [1] },
      {
        stepId: 6,
        newSequences: [
          { seqId: 2, promptTokenIds: [1], outputTokenIds: [], sampling: undefined },
          { seqId: 2, promptTokenIds: [1], outputTokenIds: [], sampling: undefined },
        ],
      },
    ];
    for (const partial of bad) {
      const { err } = await step(service, partial);
      expect(err?.code, JSON.stringify(partial)).toBe(status.INVALID_ARGUMENT);
    }
    expect(backend.inputs).toHaveLength(1);
    // Sequence 1 is intact: its decode at position 2 runs without a reset.
    const decode = await step(service, {
      stepId: 6,
      sequences: [
        {
          seqId: 1,
          tokenIds: [3],
          numComputedTokens: 2,
          newBlockIds: [],
          doSample: true,
          outputIndex: 1,
          bannedTokenIds: [],
        },
      ],
    });
    expect(decode.err).toBeNull();
    expect(Array.from(backend.inputs[1]!.slotMapping)).toEqual([2]);
    expect(decode.res?.results.map((r) => r.seqId)).toEqual([1]);
  });

  it("drops one sequence with a bad token id or sampling, and runs the others", async () => {
    const backend = new FakeBackend();
    const service = serviceWith(backend);
    const good = prefill(1, [1, 2], [0]);
    const badToken = prefill(2, [1, 99], [1]);
    const badSampling = prefill(3, [4], [2]);
    badSampling.newSequences[0]!.sampling = { topP: 1, temperature: Number.NaN } as never;
    const { err, res } = await step(service, {
      stepId: 1,
      reset: true,
      newSequences: [...good.newSequences, ...badToken.newSequences, ...badSampling.newSequences],
      sequences: [...good.sequences, ...badToken.sequences, ...badSampling.sequences],
    });
    expect(err).toBeNull();
    expect(res?.results.map((r) => r.seqId)).toEqual([1]);
    expect(res?.failures.map((f) => f.seqId)).toEqual([2, 3]);
    expect(Array.from(backend.inputs[0]!.queryLens)).toEqual([2]);
  });
});

describe("worker Health reflects the backend", () => {
  it("NOT_SERVING once the compute thread is dead", async () => {
    const backend = new FakeBackend();
    const service = serviceWith(backend);
    expect(await health(service)).toBe(true);
    backend.dead = "CPU backend thread exited with code 1";
    expect(await health(service)).toBe(false);
  });

  it("NOT_SERVING while a step runs past the bound", async () => {
    const backend = new FakeBackend();
    backend.isWedged = true;
    const service = serviceWith(backend, 50);
    void step(service, { stepId: 1, reset: true, ...prefill(1, [1, 2], [0]) });
    expect(await health(service)).toBe(true);
    await new Promise((r) => setTimeout(r, 80));
    expect(await health(service)).toBe(false);
  });
});
