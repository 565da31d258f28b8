import { spawnSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { connect, createServer } from "node:net";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Child } from "./child";

export interface RunningRedis {
  /** redis://127.0.0.1:<port> */
  readonly url: string;
  readonly port: number;
  readonly child: Child;
  /** SIGTERM (Redis flushes its AOF and exits), SIGKILL after 5 s. */
  stop(): Promise<void>;
}

/** True when `redis-server` is on PATH. */
export function hasRedisServer(): boolean {
  return spawnSync("redis-server", ["--version"], { stdio: "ignore" }).status === 0;
}

/**
 * Starts `redis-server` from PATH as a child, persisting with AOF (fsync on every write, so an
 * acknowledged batch answer survives a kill) in `<dataDir>/redis`, on `port` (0 picks a free
 * one). Resolves once it answers PING. Restarting on the same dataDir recovers every key.
 */
export async function startRedis(
  dataDir: string,
  log: (line: string) => void,
  port = 0,
  timeoutMs = 15_000,
): Promise<RunningRedis> {
  const dir = join(dataDir, "redis");
  mkdirSync(dir, { recursive: true });
  const chosen = port || (await freePort());
  const child = new Child(
    {
      name: "redis",
      command: "redis-server",
      args: [
        ...["--port", String(chosen), "--bind", "127.0.0.1", "--dir", dir],
        ...["--appendonly", "yes", "--appendfsync", "always", "--save", ""],
        ...["--loglevel", "warning"],
      ],
      cwd: dir,
    },
    log,
  );
  const deadline = Date.now() + timeoutMs;
  while (!(await ping(chosen))) {
    if (child.hasExited) throw new Error("redis-server exited while starting (see its log)");
    if (Date.now() > deadline) {
      await child.stop("SIGKILL", 1000);
      throw new Error(`redis-server did not answer PING in ${timeoutMs} ms`);
    }
    await sleep(50);
  }
  return {
    url: `redis://127.0.0.1:${chosen}`,
    port: chosen,
    child,
    stop: async () => {
      await child.stop("SIGTERM", 5000);
    },
  };
}

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.once("error", () => done(false));
    socket.once("connect", () => socket.write("PING\r\n"));
    socket.once("data", (data) => done(data.toString().startsWith("+PONG")));
    socket.setTimeout(1000, () => done(false));
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => resolve(typeof address === "object" && address ? address.port : 0));
    });
  });
}
