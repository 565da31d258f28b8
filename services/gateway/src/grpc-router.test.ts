import { EventEmitter } from "node:events";
import { Server, ServerCredentials, type ServerWritableStream, status } from "@grpc/grpc-js";
import {
  ErrorCode,
  type GenerateEvent,
  type GenerateRequest,
  KilnError,
  PoolingType,
  RouterService,
} from "@kiln/proto";
import type { FastifyReply } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createGrpcRouter } from "./grpc-router";
import { InFlight } from "./in-flight";
import type { RouterPort } from "./router-port";

type Call = ServerWritableStream<GenerateRequest, GenerateEvent>;

let server: Server;
let router: RouterPort;
let numCancelled = 0;
let numAborted = 0;
/** Running endless calls by request id, for the fake Abort. */
const calls = new Map<string, Call>();

/** Behaviour chosen by the request id. */
function generate(call: Call): void {
  const id = call.request.requestId;
  if (id === "full") {
    call.emit("error", { code: status.RESOURCE_EXHAUSTED, details: "queue full" });
    return;
  }
  if (id === "deadline") {
    // The router noticed the request's deadline first (the call carries it).
    call.emit("error", {
      code: status.DEADLINE_EXCEEDED,
      details: "Deadline exceeded after 0.999s",
    });
    return;
  }
  if (id === "lost") {
    call.write({ error: { code: ErrorCode.WORKER_LOST, message: "worker gone" } });
    call.end();
    return;
  }
  calls.set(id, call);
  // grpc-js emits "cancelled" whenever the stream closes; only one that closes before the
  // server ended it was reset by the client.
  call.on("cancelled", () => {
    if (!call.writableFinished) numCancelled++;
    clearInterval(timer);
  });
  call.on("finish", () => clearInterval(timer));
  const timer = setInterval(() => {
    call.write({
      token: { index: 0, tokens: [{ tokenId: 5, logprob: -1, topLogprobs: [], embedding: [] }] },
    });
  }, 5);
}

beforeAll(async () => {
  server = new Server();
  server.addService(RouterService, {
    generate,
    // Like the real router: an aborted request's stream ends normally. "deaf" never ends.
    abort: (call: { request: { requestId: string } }, cb: (e: null, r: object) => void) => {
      const id = call.request.requestId;
      const running = calls.get(id);
      if (running && id !== "deaf") {
        numAborted++;
        running.end();
      }
      cb(null, { found: running !== undefined });
    },
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
  router = createGrpcRouter(`127.0.0.1:${port}`, { abortGraceMs: 500 });
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
    adapterPath: "",
    n: 1,
    tenant: "",
    tenantWeight: 0,
    pooling: PoolingType.POOLING_TYPE_NONE,
    disableSpeculation: false,
    grammar: undefined,
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

  it("aborts through the router, without resetting the stream, when the signal aborts and when the consumer stops early", async () => {
    const controller = new AbortController();
    let numEvents = 0;
    for await (const _ of router.generate(request("endless-1"), controller.signal)) {
      if (++numEvents === 2) controller.abort();
    }
    for await (const _ of router.generate(request("endless-2"), new AbortController().signal)) {
      break;
    }
    await expect.poll(() => numAborted).toBe(2);
    await expect.poll(() => calls.get("endless-2")?.writableFinished).toBe(true);
    expect(numCancelled).toBe(0);
  });

  it("cancels the call when the router does not end an aborted stream in time", async () => {
    for await (const _ of router.generate(request("deaf"), new AbortController().signal)) {
      break;
    }
    await expect.poll(() => numCancelled, { timeout: 3000 }).toBe(1);
  });

  it("a deadline the router reports first ends with the request's own timeout error", async () => {
    const raw = Object.assign(new EventEmitter(), { writableFinished: false });
    const { signal, done } = new InFlight(60_000).open({ raw } as unknown as FastifyReply);
    try {
      await expect(drain("deadline", signal)).rejects.toMatchObject({
        code: "DEADLINE_EXCEEDED",
        message: expect.stringMatching(/timeout of 60 s/),
      });
    } finally {
      done();
    }
  });

  it("reports health", async () => {
    expect(await router.isHealthy()).toBe(true);
  });
});
