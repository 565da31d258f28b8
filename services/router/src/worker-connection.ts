import { credentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import {
  type GrammarSpec,
  type HealthResponse,
  type StepRequest,
  type StepResponse,
  WORKER_LINK_OPTIONS,
  WorkerClient,
  type WorkerInfo,
} from "@kiln/proto";

/**
 * One gRPC channel to a worker. Every call has a deadline; failures surface as rejected
 * promises carrying the grpc-js ServiceError, and the caller (the replica) decides what a
 * failure means for its requests.
 */
export class WorkerConnection {
  private readonly client: WorkerClient;

  constructor(readonly address: string) {
    this.client = new WorkerClient(address, credentials.createInsecure(), WORKER_LINK_OPTIONS);
  }

  info(timeoutMs: number): Promise<WorkerInfo> {
    return new Promise((resolve, reject) => {
      this.client.info({}, new Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) =>
        err ? reject(err) : resolve(res),
      );
    });
  }

  /** `metadata` carries the step's trace context when tracing is on. */
  step(req: StepRequest, timeoutMs: number, metadata = new Metadata()): Promise<StepResponse> {
    return new Promise((resolve, reject) => {
      this.client.step(req, metadata, { deadline: Date.now() + timeoutMs }, (err, res) =>
        err ? reject(err) : resolve(res),
      );
    });
  }

  /**
   * Compiles `grammar` on the worker (ADR 0016); resolves with the worker's error message, or
   * null once it is compiled. Rejects when the call fails.
   */
  prepareGrammar(grammar: GrammarSpec, timeoutMs: number): Promise<string | null> {
    return new Promise((resolve, reject) => {
      this.client.prepareGrammar(
        { grammar },
        new Metadata(),
        { deadline: Date.now() + timeoutMs },
        (err, res) => (err ? reject(err) : resolve(res.error || null)),
      );
    });
  }

  health(timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      this.client.health({}, new Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) =>
        resolve(!err && res.serving),
      );
    });
  }

  /** Health with the drain flag; null when the worker does not answer in time. */
  healthState(timeoutMs: number): Promise<HealthResponse | null> {
    return new Promise((resolve) => {
      this.client.health({}, new Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) =>
        resolve(err ? null : res),
      );
    });
  }

  /** Asks the worker to exit (the end of its drain); resolves whether it acknowledged. */
  shutdown(timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      this.client.shutdown({}, new Metadata(), { deadline: Date.now() + timeoutMs }, (err) =>
        resolve(!err),
      );
    });
  }

  close(): void {
    this.client.close();
  }
}

export function describeGrpcError(err: unknown): string {
  const e = err as Partial<ServiceError>;
  return e.details || e.message || String(err);
}
