import { credentials, Metadata, makeGenericClientConstructor, status } from "@grpc/grpc-js";
import { ErrorCode, GenerateRequest, SamplingParams } from "@kiln/proto";
import { loadGoldenCases, waitFor } from "@kiln/test-support";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ServiceProcess, startRouter, startWorker, waitForHealthyReplicas } from "./processes";
import { TestRouterClient } from "./router-client";

const golden = loadGoldenCases();
const VOCAB_SIZE = 512;

let router: ServiceProcess;
let worker: ServiceProcess;
let client: TestRouterClient;

beforeAll(async () => {
  router = await startRouter(["--max-num-seqs", "16"]);
  worker = await startWorker(router.port, null, ["--kv-cache-memory", "8MiB"]);
  client = new TestRouterClient(router.port);
  await waitForHealthyReplicas(client, 1);
}, 90_000);

afterAll(async () => {
  client?.close();
  await worker?.stop();
  await router?.stop();
});

function registerWorker(address: string): Promise<{ code: number | null }> {
  return new Promise((resolve) => {
    client.client.registerWorker({ address, replicaId: "x", instanceId: "i", role: "" }, (err) =>
      resolve({ code: err ? err.code : null }),
    );
  });
}

function routerHealth(): Promise<boolean> {
  return new Promise((resolve) => {
    const deadline = Date.now() + 2000;
    client.client.health({}, new Metadata(), { deadline }, (err, res) =>
      resolve(!err && res.serving),
    );
  });
}

function isAlive(pid: number | undefined): boolean {
  try {
    process.kill(pid!, 0);
    return true;
  } catch {
    return false;
  }
}

/** The replica is still the one connected at the start: no request failed it. */
async function expectReplicaIntact(): Promise<void> {
  const { replicas } = await client.stats();
  expect(replicas.map((r) => [r.replicaId, r.healthy])).toEqual([["replica-0", true]]);
  expect(isAlive(router.pid)).toBe(true);
  expect(isAlive(worker.pid)).toBe(true);
}

async function expectGolden(): Promise<void> {
  const c = golden[0]!;
  const result = await client.generate({
    promptTokenIds: [...c.prompt_ids],
    maxTokens: c.greedy_ids.length,
    ignoreEos: true,
  });
  expect(result.error).toBeNull();
  expect(result.tokenIds).toEqual(c.greedy_ids);
}

describe("the router's trust boundary", () => {
  it("answers RegisterWorker with a bad address with INVALID_ARGUMENT and keeps running", async () => {
    for (const address of ["", ":", "no-port", "host:99999", "a b:1", "x".repeat(5000)]) {
      expect((await registerWorker(address)).code, address.slice(0, 20)).toBe(
        status.INVALID_ARGUMENT,
      );
    }
    // A well-formed address nobody listens at is refused, not a crash.
    expect(await registerWorker("127.0.0.1:1")).toEqual({ code: null });
    expect(await routerHealth()).toBe(true);
    await expectReplicaIntact();
  }, 30_000);

  it.each<[string, Partial<GenerateRequest>]>([
    ["n = 2^31 - 1", { n: 2 ** 31 - 1 }],
    ["negative n", { n: -1 }],
    ["a 4 KiB cache salt", { cacheSalt: "s".repeat(4096) }],
    ["a token id past the vocabulary", { promptTokenIds: [1, VOCAB_SIZE] }],
    ["a negative token id", { promptTokenIds: [1, -7] }],
    ["a stop token id past the vocabulary", { stopTokenIds: [VOCAB_SIZE + 3] }],
    ["a NaN temperature", { sampling: SamplingParams.fromPartial({ temperature: Number.NaN }) }],
    ["top_p above 1", { sampling: SamplingParams.fromPartial({ topP: 1.5 }) }],
    ["a negative top_k", { sampling: SamplingParams.fromPartial({ topK: -2 }) }],
    ["too many top logprobs", { sampling: SamplingParams.fromPartial({ numTopLogprobs: 1e6 }) }],
    [
      "a logit bias past the vocabulary",
      { sampling: SamplingParams.fromPartial({ logitBias: { [VOCAB_SIZE]: 1 } }) },
    ],
    [
      "an infinite logit bias",
      { sampling: SamplingParams.fromPartial({ logitBias: { 5: Number.POSITIVE_INFINITY } }) },
    ],
  ])(
    "refuses %s at admission while other requests run on",
    async (_what, bad) => {
      const c = golden[1]!;
      const good = client.generate({
        promptTokenIds: [...c.prompt_ids],
        maxTokens: c.greedy_ids.length,
        ignoreEos: true,
      });
      const result = await client.generate({ promptTokenIds: [1, 2, 3], maxTokens: 4, ...bad });
      expect(result.error).toMatch(/INVALID_ARGUMENT/);
      expect(result.tokenIds).toEqual([]);
      const goodResult = await good;
      expect(goodResult.error).toBeNull();
      expect(goodResult.tokenIds).toEqual(c.greedy_ids);
      await expectReplicaIntact();
    },
    30_000,
  );
});

describe("aborting one choice of n", () => {
  it("stops that choice and frees its blocks; the other runs to max_tokens", async () => {
    const requestId = "choice-abort";
    let numTokens = 0;
    let isAborted = false;
    const abortChoice = () =>
      new Promise<boolean>((resolve) => {
        client.client.abort({ requestId, index: 0, isStop: false }, (err, res) =>
          resolve(!err && res.found),
        );
      });
    const done = client.generate(
      {
        requestId,
        promptTokenIds: [...golden[0]!.prompt_ids],
        n: 2,
        maxTokens: 200,
        ignoreEos: true,
        sampling: SamplingParams.fromPartial({ temperature: 1, seed: 7 }),
      },
      () => {
        numTokens++;
        if (numTokens === 6 && !isAborted) {
          isAborted = true;
          void abortChoice().then((found) => expect(found).toBe(true));
        }
        return false;
      },
    );
    const result = await done;
    expect(result.error).toBeNull();
    const countOf = (i: number) =>
      result.events
        .filter((e) => e.token?.index === i)
        .reduce((n, e) => n + e.token!.tokens.length, 0);
    expect(countOf(1)).toBe(200);
    expect(countOf(0)).toBeLessThan(50);
    const finished = result.events.filter((e) => e.finished).map((e) => e.finished!);
    expect(finished.find((f) => f.index === 0)?.finishReason).toBe("abort");
    expect(finished.find((f) => f.index === 1)?.finishReason).toBe("length");
    await waitFor(
      async () => (await client.stats()).replicas[0]!.numUsedBlocks === 0,
      "blocks freed",
    );
  }, 30_000);
});

describe("a gRPC deadline on Generate", () => {
  it("ends the call with DEADLINE_EXCEEDED and frees every block", async () => {
    const request = GenerateRequest.fromPartial({
      promptTokenIds: [...golden[0]!.prompt_ids],
      n: 4,
      maxTokens: 400,
      ignoreEos: true,
      sampling: SamplingParams.fromPartial({ temperature: 1 }),
    });
    const call = client.client.generate(request, new Metadata(), { deadline: Date.now() + 400 });
    let numTokens = 0;
    const code = await new Promise<number>((resolve) => {
      call.on("data", (e: { token?: unknown }) => {
        if (e.token) numTokens++;
      });
      call.on("error", (err: { code: number }) => resolve(err.code));
      call.on("end", () => resolve(status.OK));
    });
    expect(code).toBe(status.DEADLINE_EXCEEDED);
    expect(numTokens).toBeLessThan(4 * 400);
    await waitFor(async () => {
      const [replica] = (await client.stats()).replicas;
      return replica!.numUsedBlocks === 0 && replica!.numRunning === 0;
    }, "blocks freed after the deadline");
    await expectReplicaIntact();
  }, 30_000);
});

/** Sends raw bytes as a Generate message: the router must refuse what does not decode. */
const RawRouter = makeGenericClientConstructor(
  {
    generate: {
      path: "/kiln.v1.Router/Generate",
      requestStream: false,
      responseStream: true,
      requestSerialize: (b: Buffer) => b,
      requestDeserialize: (b: Buffer) => b,
      responseSerialize: (b: Buffer) => b,
      responseDeserialize: (b: Buffer) => b,
    },
  },
  "RawRouter",
);

const sampling = fc.record({
  temperature: fc.oneof(fc.float({ min: 0, max: 2, noNaN: true }), fc.float()),
  topK: fc.integer({ min: -3, max: 1000 }),
  topP: fc.oneof(fc.float({ min: 0, max: 1, noNaN: true }), fc.float()),
  minP: fc.float(),
  repetitionPenalty: fc.float(),
  presencePenalty: fc.float(),
  frequencyPenalty: fc.float(),
  logitBias: fc.dictionary(
    fc.integer({ min: -2, max: VOCAB_SIZE + 2 }).map(String),
    fc.oneof(fc.float({ min: -100, max: 100, noNaN: true }), fc.float()),
    { maxKeys: 3 },
  ),
  seed: fc.nat(),
  numTopLogprobs: fc.oneof(fc.integer({ min: -2, max: 25 }), fc.constant(2 ** 31 - 1)),
});
const tokenId = fc.oneof(
  { weight: 5, arbitrary: fc.integer({ min: 0, max: VOCAB_SIZE - 1 }) },
  fc.integer({ min: -3, max: VOCAB_SIZE + 3 }),
  fc.constantFrom(2 ** 31 - 1, -(2 ** 31)),
);
const generateRequest = fc.record({
  requestId: fc.oneof(fc.constant(""), fc.string({ maxLength: 300 })),
  promptTokenIds: fc.array(tokenId, { maxLength: 40 }),
  sampling: fc.option(sampling, { nil: undefined }),
  maxTokens: fc.oneof(fc.integer({ min: -2, max: 6 }), fc.constant(2 ** 31 - 1)),
  minTokens: fc.integer({ min: -2, max: 8 }),
  stopTokenIds: fc.array(tokenId, { maxLength: 4 }),
  ignoreEos: fc.boolean(),
  priority: fc.integer(),
  cacheSalt: fc.string({ maxLength: 8 }),
  n: fc.oneof(fc.integer({ min: -2, max: 4 }), fc.constantFrom(64, 2 ** 31 - 1)),
});
/** What a malformed or refused Generate may end with; never INTERNAL, UNAVAILABLE or WORKER_LOST. */
const ACCEPTABLE_ERRORS = /INVALID_ARGUMENT|RESOURCE_EXHAUSTED|ALREADY_EXISTS/;

describe("fuzzed Generate messages (fast-check)", () => {
  it("are refused or served; the router and its replica stay healthy and golden", async () => {
    let numServed = 0;
    let numRefused = 0;
    await fc.assert(
      fc.asyncProperty(generateRequest, async (partial) => {
        // Each call ends after its first token (or its error): the property is about admission.
        const result = await client.generate(GenerateRequest.fromPartial(partial), () => true);
        if (result.error === "cancelled" || result.error === null) {
          numServed++;
          expect(result.events.some((e) => e.error?.code === ErrorCode.WORKER_LOST)).toBe(false);
        } else {
          numRefused++;
          expect(result.error).toMatch(ACCEPTABLE_ERRORS);
        }
      }),
      { numRuns: 120, seed: 19 },
    );
    expect(numServed).toBeGreaterThan(0);
    expect(numRefused).toBeGreaterThan(0);
    const raw = new RawRouter(`127.0.0.1:${router.port}`, credentials.createInsecure());
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 64 }), async (bytes) => {
        const call = raw.makeServerStreamRequest(
          "/kiln.v1.Router/Generate",
          (b: Buffer) => b,
          (b: Buffer) => b,
          Buffer.from(bytes),
          new Metadata(),
          { deadline: Date.now() + 2000 },
        );
        await new Promise<void>((resolve) => {
          call.on("data", () => call.cancel());
          call.on("error", () => resolve());
          call.on("end", () => resolve());
        });
      }),
      { numRuns: 60, seed: 19 },
    );
    raw.close();
    expect(await routerHealth()).toBe(true);
    await waitFor(async () => (await client.stats()).replicas[0]!.numUsedBlocks === 0, "idle");
    await expectReplicaIntact();
    await expectGolden();
  }, 120_000);
});
