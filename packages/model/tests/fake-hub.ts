import { readdirSync, readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";

/** Serves one directory as a Hub repository over the Hub's HTTP API, on 127.0.0.1. */
export interface FakeHub {
  readonly endpoint: string;
  /** Every request received: method, path and Range header. */
  readonly log: { path: string; range: string | undefined; auth: string | undefined }[];
  /** Files whose next download is cut off after half the body (consumed on use). */
  readonly interruptOnce: Set<string>;
  /** When true, Range headers are ignored and every file is answered with 200. */
  ignoreRange: boolean;
  close(): Promise<void>;
}

export interface FakeHubOptions {
  readonly repoId: string;
  readonly dir: string;
  readonly sha: string;
  /** Extra sibling names listed but never needed (they 500 if fetched). */
  readonly extraSiblings?: readonly string[];
  /** When set, requests without `Authorization: Bearer <token>` get 401. */
  readonly token?: string;
}

export async function startFakeHub(opts: FakeHubOptions): Promise<FakeHub> {
  const files = new Map(readdirSync(opts.dir).map((f) => [f, readFileSync(join(opts.dir, f))]));
  const siblings = [...files.keys(), ...(opts.extraSiblings ?? [])].map((rfilename) => ({
    rfilename,
  }));
  const hub = {
    endpoint: "",
    log: [] as FakeHub["log"],
    interruptOnce: new Set<string>(),
    ignoreRange: false,
  };

  function serveFile(req: IncomingMessage, res: ServerResponse, name: string) {
    const body = files.get(name);
    if (body === undefined) return void res.writeHead(404).end();
    const m = req.headers.range?.match(/^bytes=(\d+)-$/);
    if (m && !hub.ignoreRange) {
      const start = Number(m[1]);
      if (start >= body.length) return void res.writeHead(416).end();
      res.writeHead(206, {
        "content-length": body.length - start,
        "content-range": `bytes ${start}-${body.length - 1}/${body.length}`,
      });
      return void res.end(body.subarray(start));
    }
    res.writeHead(200, { "content-length": body.length });
    if (hub.interruptOnce.delete(name)) {
      // Send half, then drop the connection as a flaky network would.
      res.write(body.subarray(0, body.length >> 1), () => res.destroy());
      return;
    }
    res.end(body);
  }

  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname);
    hub.log.push({ path, range: req.headers.range, auth: req.headers.authorization });
    if (opts.token !== undefined && req.headers.authorization !== `Bearer ${opts.token}`) {
      return void res.writeHead(401).end();
    }
    if (path.startsWith("/cdn/")) return serveFile(req, res, path.slice(5));
    const apiPrefix = `/api/models/${opts.repoId}/revision/`;
    if (path.startsWith(apiPrefix)) {
      res.writeHead(200, { "content-type": "application/json" });
      return void res.end(JSON.stringify({ id: opts.repoId, sha: opts.sha, siblings }));
    }
    const m = path.match(/^\/(.+)\/resolve\/([^/]+)\/(.+)$/);
    if (m && m[1] === opts.repoId) {
      if (!files.has(m[3]!)) return void res.writeHead(500).end(); // never asked for extras
      // The real Hub redirects large files to a CDN.
      return void res.writeHead(302, { location: `/cdn/${encodeURIComponent(m[3]!)}` }).end();
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  hub.endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return Object.assign(hub, {
    close: () =>
      new Promise<void>((done) => {
        server.closeAllConnections();
        server.close(() => done());
      }),
  });
}
