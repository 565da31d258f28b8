import {
  type ClientDuplexStream,
  credentials,
  Metadata,
  type ServiceError,
  status,
} from "@grpc/grpc-js";
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
  /** The open StepStream, created by the first untraced step and after each failure. */
  private stepStream: ClientDuplexStream<StepRequest, StepResponse> | null = null;
  /**
   * Steps sent on `stepStream` and not answered yet, oldest first: the worker answers them in
   * order (two at most: a step and the one planned ahead of it, ADR 0021).
   */
  private readonly pendingSteps: {
    readonly resolve: (res: StepResponse) => void;
    readonly reject: (err: unknown) => void;
  }[] = [];
  private numStepStreams = 0;

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

  /**
   * One step. `metadata` carries the step's trace context when tracing is on: such a step is a
   * unary Step call. Any other goes on the StepStream (ADR 0021, addendum), which saves the per-call
   * HTTP/2 stream set-up; a failure or a missed deadline rejects with the worker's status (a
   * ServiceError-like object) and closes the stream, and the next step opens a new one.
   * A streamed step may be sent while the previous one runs (a step planned ahead, ADR 0021): the
   * worker runs them in order, and a failure rejects both. Its deadline counts from its sending,
   * so it includes the wait for the step before it.
   */
  step(req: StepRequest, timeoutMs: number, metadata = new Metadata()): Promise<StepResponse> {
    if (Object.keys(metadata.getMap()).length > 0) {
      return new Promise((resolve, reject) => {
        this.client.step(req, metadata, { deadline: Date.now() + timeoutMs }, (err, res) =>
          err ? reject(err) : resolve(res),
        );
      });
    }
    const stream = this.openStepStream();
    return new Promise<StepResponse>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.failStepStream(stream, streamError(status.DEADLINE_EXCEEDED, "Deadline exceeded"));
      }, timeoutMs);
      this.pendingSteps.push({
        resolve: (res) => {
          clearTimeout(timer);
          resolve(res);
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      });
      stream.write(req);
    });
  }

  /** StepStreams opened so far (one, plus one after each failed step). */
  get stepStreamsOpened(): number {
    return this.numStepStreams;
  }

  private openStepStream(): ClientDuplexStream<StepRequest, StepResponse> {
    if (this.stepStream !== null) return this.stepStream;
    const stream = this.client.stepStream();
    this.numStepStreams++;
    stream.on("data", (res: StepResponse) => {
      if (this.stepStream !== stream) return; // a late answer on a stream given up
      this.pendingSteps.shift()?.resolve(res);
    });
    stream.on("error", (err: ServiceError) => this.failStepStream(stream, err));
    stream.on("end", () =>
      this.failStepStream(stream, streamError(status.UNAVAILABLE, "the step stream ended")),
    );
    this.stepStream = stream;
    return stream;
  }

  /** Rejects the waiting steps with `err` and drops `stream` (if it is still the open one). */
  private failStepStream(
    stream: ClientDuplexStream<StepRequest, StepResponse>,
    err: unknown,
  ): void {
    if (this.stepStream !== stream) return;
    this.stepStream = null;
    stream.cancel();
    for (const pending of this.pendingSteps.splice(0)) pending.reject(err);
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
    if (this.stepStream !== null) {
      this.failStepStream(this.stepStream, streamError(status.CANCELLED, "the connection closed"));
    }
    this.client.close();
  }
}

/** An error shaped like grpc-js's ServiceError, for a step failed on the router's side. */
function streamError(code: status, details: string): Error & { code: status; details: string } {
  return Object.assign(new Error(`${code} ${status[code]}: ${details}`), { code, details });
}

export function describeGrpcError(err: unknown): string {
  const e = err as Partial<ServiceError>;
  return e.details || e.message || String(err);
}
