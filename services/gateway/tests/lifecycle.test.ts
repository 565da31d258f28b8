import { request } from "node:http";
import type { AddressInfo } from "node:net";
import { waitFor } from "@kiln/test-support";
import { afterEach, describe, expect, it } from "vitest";
import { makeApp, parseSse, type TestApp } from "./helpers/app";

/** In-process fake router: the conditions hold within milliseconds. */
const FAST = { timeoutMs: 3000, intervalMs: 10 };

let t: TestApp;
afterEach(async () => {
  await t?.app.close();
});

/** Posts a streaming request and hangs up once the first bytes arrive. */
async function postAndHangUp(port: number, body: object): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const req = request(
      { host: "127.0.0.1", port, method: "POST", path: "/v1/chat/completions" },
      (res) => {
        res.once("data", () => {
          req.destroy();
          resolve();
        });
      },
    );
    req.on("error", (err) => (req.destroyed ? resolve() : reject(err)));
    req.setHeader("content-type", "application/json");
    req.end(JSON.stringify(body));
  });
}

describe("client disconnects", () => {
  it.each([true, false])("abort the router call (stream: %s)", async (stream) => {
    t = makeApp({ script: { isEndless: true } });
    await t.app.listen({ host: "127.0.0.1", port: 0 });
    const port = (t.app.server.address() as AddressInfo).port;
    const body = {
      model: "toy",
      messages: [{ role: "user", content: "hi" }],
      max_tokens: 20,
      stream,
    };
    if (stream) {
      await postAndHangUp(port, body);
    } else {
      const req = request({
        host: "127.0.0.1",
        port,
        method: "POST",
        path: "/v1/chat/completions",
      });
      req.on("error", () => {});
      req.setHeader("content-type", "application/json");
      req.end(JSON.stringify(body));
      await waitFor(() => t.router.numOpen === 1, "one open call", FAST);
      req.destroy();
    }
    await waitFor(
      () => t.router.numCancelled === 1 && t.router.numOpen === 0,
      "the call to be cancelled",
      FAST,
    ).catch((e) => {
      throw new Error(
        `${e} open=${t.router.numOpen} cancelled=${t.router.numCancelled} reqs=${t.router.requests.length}`,
      );
    });
  });
});

describe("shutdown", () => {
  it.each([true, false])(
    "aborts running requests with a 503 error (stream: %s)",
    async (stream) => {
      t = makeApp({ script: { isEndless: true } });
      const pending = t.app.inject({
        method: "POST",
        url: "/v1/chat/completions",
        payload: { model: "toy", messages: [{ role: "user", content: "hi" }], stream },
      });
      await waitFor(() => t.router.numOpen === 1, "one open call", FAST);
      // Streamed: let tokens flow so the 200 is committed (before that it is a plain 503).
      if (stream) await new Promise((r) => setTimeout(r, 50));
      t.inFlight.abortAll();
      const res = await pending;
      const error = {
        error: {
          message: "The server shut down before the request finished.",
          type: "server_error",
          param: null,
          code: "unavailable",
        },
      };
      if (stream) {
        expect(res.statusCode).toBe(200);
        expect(parseSse(res.body).slice(-2)).toEqual([error, "[DONE]"]);
      } else {
        expect(res.statusCode).toBe(503);
        expect(res.json()).toEqual(error);
      }
      expect(t.router.numCancelled).toBe(1);
    },
  );
});
