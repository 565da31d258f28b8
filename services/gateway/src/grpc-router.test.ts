import { Server, ServerCredentials, type ServerWritableStream, status } from "@grpc/grpc-js";
import {
  ErrorCode,
  type GenerateEvent,
  type GenerateRequest,
  KilnError,
  RouterService,
} from "@kiln/proto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createGrpcRouter } from "./grpc-router";
import type { RouterPort } from "./router-port";

type Call = ServerWritableStream<GenerateRequest, GenerateEvent>;

let server: Server;
let router: RouterPort;
let numCancelled = 0;

/** Behaviour chosen by the request id. */
function generate(call: Call): void {
  const id = call.request.requestId;
  if (id === "full") {
    call.emit("error", { code: status.RESOURCE_EXHAUSTED, details: "queue full" });
    return;
  }
  if (id === "lost") {
    call.write({ error: { code: ErrorCode.WORKER_LOST, message: "worker gone" } });
    call.end();
    return;
  }
  call.on("cancelled", () => {
    numCancelled++;
    clearInterval(timer);
  });
  const timer = setInterval(() => {
    call.write({ token: { index: 0, tokens: [{ tokenId: 5, logprob: -1, topLogprobs: [] }] } });
  }, 5);
}

beforeAll(async () => {
  server = new Server();
  server.addService(RouterService, {
    generate,
    abort: () => {},
    health: (_call: unknown, cb: (e: null, r: object) => void) =>
      cb(null, { serving: true, numHealthyGroups: 1, numGroups: 1 }),
    stats: () => {},
    registerWorker: () => {},
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  router = createGrpcRouter(`127.0.0.1:${port}`);
});

afterAll(() => {
  router.close();
  server.forceShutdown();
});

function request(requestId: string): GenerateRequest {
  return {
    requestId,
    promptTokenIds: [1],
    sampling: undefined,
    maxTokens: 4,
    minTokens: 0,
    stopTokenIds: [],
    ignoreEos: false,
    priority: 0,
    cacheSalt: "",
    priorityClass: 0,
    adapter: "",
    n: 1,
  };
}

async function drain(id: string, signal = new AbortController().signal) {
  const events: GenerateEvent[] = [];
  for await (const e of router.generate(request(id), signal)) events.push(e);
  return events;
}

describe("createGrpcRouter", () => {
  it("maps RESOURCE_EXHAUSTED to OVERLOADED and error events to their code", async () => {
    await expect(drain("full")).rejects.toMatchObject({ code: "OVERLOADED" });
    await expect(drain("lost")).rejects.toEqual(new KilnError("WORKER_LOST", "worker gone"));
  });

  it("cancels the call when the signal aborts, and when the consumer stops early", async () => {
    const controller = new AbortController();
    let numEvents = 0;
    for await (const _ of router.generate(request("endless"), controller.signal)) {
      if (++numEvents === 2) controller.abort();
    }
    for await (const _ of router.generate(request("endless"), new AbortController().signal)) {
      break;
    }
    await expect.poll(() => numCancelled).toBe(2);
  });

  it("reports health", async () => {
    expect(await router.isHealthy()).toBe(true);
  });
});
