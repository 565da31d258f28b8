import type { ServerUnaryCall, sendUnaryData } from "@grpc/grpc-js";
import type { HealthRequest, HealthResponse, WorkerServer } from "@kiln/proto";

/**
 * A worker's drain (SIGTERM under Kubernetes or the supervisor). Once `start` is called, Health
 * answers `draining: true`: the router stops routing new requests here, lets the running ones
 * finish, removes the replica and calls Shutdown, which exits the process. The worker keeps
 * serving steps meanwhile. If the router never comes (gone, or no router configured) the
 * drain timeout exits anyway.
 */
export class WorkerDrain {
  private timer: NodeJS.Timeout | undefined;
  private isStarted = false;

  constructor(
    private readonly timeoutMs: number,
    private readonly shutdown: () => void,
  ) {}

  get isDraining(): boolean {
    return this.isStarted;
  }

  /** Idempotent. `onStart` runs once (stop re-registering with the router). */
  start(onStart: () => void): void {
    if (this.isStarted) return;
    this.isStarted = true;
    onStart();
    this.timer = setTimeout(() => {
      process.stderr.write(`kiln worker: drain timeout (${this.timeoutMs} ms): stopping\n`);
      this.shutdown();
    }, this.timeoutMs);
    this.timer.unref();
  }

  /** `service` with Health reporting the drain (everything else unchanged). */
  wrap(service: WorkerServer): WorkerServer {
    const health = service.health.bind(service);
    return {
      ...service,
      health: (
        call: ServerUnaryCall<HealthRequest, HealthResponse>,
        callback: sendUnaryData<HealthResponse>,
      ) => {
        health(call, (err, res) =>
          err || !res ? callback(err, res) : callback(null, { ...res, draining: this.isStarted }),
        );
      },
    };
  }
}
