import { KilnError } from "@kiln/proto";
import type { FastifyReply } from "fastify";

/** Deadline (epoch ms) of each open request's signal, when a request timeout is set. */
const signalToDeadline = new WeakMap<AbortSignal, number>();
/** The error a signal's request ends with when its deadline passes. */
const signalToDeadlineError = new WeakMap<AbortSignal, KilnError>();

/**
 * When the request behind `signal` must end (epoch ms), or undefined without a timeout. The
 * gRPC router client passes it on as the Generate call's deadline, so the router enforces it too.
 */
export function deadlineOf(signal: AbortSignal): number | undefined {
  return signalToDeadline.get(signal);
}

/**
 * The DEADLINE_EXCEEDED error the request behind `signal` ends with once its timeout passes, or
 * undefined without a timeout. The router enforces the same deadline on its call and may report
 * it first; the gateway then answers with this error all the same.
 */
export function deadlineErrorOf(signal: AbortSignal): KilnError | undefined {
  return signalToDeadlineError.get(signal);
}

/**
 * The generations running right now. Each HTTP request that reaches the router gets a signal
 * that aborts when its client disconnects, when the request is done, when its timeout passes
 * (`requestTimeoutMs`, reason DEADLINE_EXCEEDED: a 504 or an error event), or on `abortAll()`
 * (shutdown after the drain timeout).
 */
export class InFlight {
  private readonly controllers = new Set<AbortController>();

  /** `requestTimeoutMs`: how long one request may run (KILN_REQUEST_TIMEOUT_S); null = no limit. */
  constructor(private readonly requestTimeoutMs: number | null = null) {}

  get numActive(): number {
    return this.controllers.size;
  }

  /** A signal tied to `reply`'s connection; call the returned `done` when the request ends. */
  open(reply: FastifyReply): { signal: AbortSignal; done: () => void } {
    const controller = new AbortController();
    this.controllers.add(controller);
    const timer = this.startDeadline(controller);
    const res = reply.raw;
    const onClose = () => {
      // 'close' before the response finished means the client went away: stop generating.
      if (!res.writableFinished) controller.abort();
      done();
    };
    const done = () => {
      if (timer) clearTimeout(timer);
      res.off("close", onClose);
      this.controllers.delete(controller);
      // Aborting after the end is harmless and guarantees every router call is released.
      controller.abort();
    };
    res.on("close", onClose);
    return { signal: controller.signal, done };
  }

  private startDeadline(controller: AbortController): NodeJS.Timeout | null {
    const timeoutMs = this.requestTimeoutMs;
    if (timeoutMs === null) return null;
    signalToDeadline.set(controller.signal, Date.now() + timeoutMs);
    const reason = new KilnError(
      "DEADLINE_EXCEEDED",
      `The request did not finish within its timeout of ${timeoutMs / 1000} s.`,
    );
    signalToDeadlineError.set(controller.signal, reason);
    return setTimeout(() => controller.abort(reason), timeoutMs);
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
