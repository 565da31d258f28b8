import type { GenerateEvent, GenerateRequest } from "@kiln/proto";

/**
 * The gateway's view of the router. `grpc-router.ts` implements it with the generated
 * RouterClient; tests substitute a scripted fake.
 */
export interface RouterPort {
  /**
   * Opens one Generate stream. Events arrive in the router's order. The iterator throws a
   * KilnError when the call fails (OVERLOADED when the router's queue is full) or an error
   * event arrives, and simply ends once `signal` is aborted — aborting cancels the call, which
   * aborts the request in the router.
   */
  generate(request: GenerateRequest, signal: AbortSignal): AsyncIterable<GenerateEvent>;
  /**
   * Stops one choice (`index`) of a running request once it matched a stop string: it stops
   * generating at once (the others keep going) and the router counts its end as "stop", not as
   * a client abort. Resolves once the router answered or the call failed; never rejects.
   * Optional for test fakes.
   */
  stopChoice?(requestId: string, index: number): Promise<void>;
  /** True when the router answers and has at least one healthy worker group. Never throws. */
  isHealthy(): Promise<boolean>;
  close(): void;
}
