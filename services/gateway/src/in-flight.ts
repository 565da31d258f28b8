import { KilnError } from "@kiln/proto";
import type { FastifyReply } from "fastify";

/**
 * The generations running right now. Each HTTP request that reaches the router gets a signal
 * that aborts when its client disconnects, when the request is done, or on `abortAll()`
 * (shutdown after the drain timeout).
 */
export class InFlight {
  private readonly controllers = new Set<AbortController>();

  get numActive(): number {
    return this.controllers.size;
  }

  /** A signal tied to `reply`'s connection; call the returned `done` when the request ends. */
  open(reply: FastifyReply): { signal: AbortSignal; done: () => void } {
    const controller = new AbortController();
    this.controllers.add(controller);
    const res = reply.raw;
    const onClose = () => {
      // 'close' before the response finished means the client went away: stop generating.
      if (!res.writableFinished) controller.abort();
      done();
    };
    const done = () => {
      res.off("close", onClose);
      this.controllers.delete(controller);
      // Aborting after the end is harmless and guarantees every router call is released.
      controller.abort();
    };
    res.on("close", onClose);
    return { signal: controller.signal, done };
  }

  /**
   * A signal for work that outlives its HTTP request (background responses): aborted by
   * `abortAll()` or by the returned `abort`; call `done` when the work ends.
   */
  openDetached(): { signal: AbortSignal; abort: (reason?: unknown) => void; done: () => void } {
    const controller = new AbortController();
    this.controllers.add(controller);
    return {
      signal: controller.signal,
      abort: (reason) => controller.abort(reason),
      done: () => {
        this.controllers.delete(controller);
        controller.abort();
      },
    };
  }

  /** Aborts every running generation; their clients get a 503 (or an error event). */
  abortAll(): void {
    const reason = new KilnError(
      "UNAVAILABLE",
      "The server shut down before the request finished.",
    );
    for (const c of this.controllers) c.abort(reason);
  }
}
