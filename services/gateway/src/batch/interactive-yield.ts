import type { FastifyInstance } from "fastify";
import { isBatchLine } from "./priority";

/** Routes whose requests generate (the ones batch lines compete with). */
const GENERATION_PATHS = new Set(["/v1/completions", "/v1/chat/completions", "/v1/responses"]);

/** How long after the last interactive generation ends batch lines stay at the busy limit. */
export const YIELD_GRACE_MS = 500;

/**
 * Counts the interactive generations running in this gateway and tells `onBusy` when the
 * count leaves zero (true) and when it has stayed at zero for `graceMs` (false). The grace
 * keeps a closed loop of interactive clients, whose next request follows the last by a few
 * milliseconds, from flapping the batch concurrency on every request.
 */
export class InteractiveLoad {
  private numActive = 0;
  private isBusy = false;
  private idleTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly onBusy: (isBusy: boolean) => void,
    private readonly graceMs = YIELD_GRACE_MS,
  ) {}

  /** One interactive generation began; call the returned function (idempotent) when it ends. */
  begin(): () => void {
    this.numActive++;
    if (this.idleTimer !== null) clearTimeout(this.idleTimer);
    this.idleTimer = null;
    if (!this.isBusy) {
      this.isBusy = true;
      this.onBusy(true);
    }
    let isEnded = false;
    return () => {
      if (isEnded) return;
      isEnded = true;
      if (--this.numActive > 0) return;
      this.idleTimer = setTimeout(() => {
        this.idleTimer = null;
        this.isBusy = false;
        this.onBusy(false);
      }, this.graceMs);
      this.idleTimer.unref();
    };
  }

  /** Counts every generation request that is not a batch line, until its connection closes. */
  register(app: FastifyInstance): void {
    app.addHook("onRequest", (request, reply, done) => {
      const path = request.url.split("?")[0]!;
      if (request.method === "POST" && GENERATION_PATHS.has(path) && !isBatchLine(request)) {
        reply.raw.once("close", this.begin());
      }
      done();
    });
  }

  close(): void {
    if (this.idleTimer !== null) clearTimeout(this.idleTimer);
    this.idleTimer = null;
  }
}
