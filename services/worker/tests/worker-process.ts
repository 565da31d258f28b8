import { credentials, Metadata } from "@grpc/grpc-js";
import { type StepRequest, type StepResponse, WorkerClient, type WorkerInfo } from "@kiln/proto";
import { STORIES_DIR } from "@kiln/test-support";
import { type ServiceProcess, startService } from "../../router/tests/processes";

/** A real worker process on stories260K (2 MiB of KV) and a client for driving its Steps. */
export interface WorkerUnderTest {
  readonly process: ServiceProcess;
  readonly client: WorkerClient;
  readonly info: WorkerInfo;
}

export async function startWorkerUnderTest(): Promise<WorkerUnderTest> {
  const process = await startService("worker", [
    ...["--model", STORIES_DIR],
    ...["--kv-cache-memory", "2MiB"],
  ]);
  const client = new WorkerClient(`127.0.0.1:${process.port}`, credentials.createInsecure());
  const info = await new Promise<WorkerInfo>((resolve, reject) =>
    client.info({}, (err, res) => (err ? reject(err) : resolve(res))),
  );
  return { process, client, info };
}

export async function stopWorkerUnderTest(w: WorkerUnderTest | undefined): Promise<void> {
  w?.client.close();
  await w?.process.stop();
}

/** A Step's outcome: the gRPC status code and details of a refusal, or the answer. */
export interface StepOutcome {
  readonly code: number | null;
  readonly res: StepResponse | null;
  readonly details?: string;
}

/** Sends one unary Step (10 s deadline) and resolves with its outcome, never rejecting. */
export function sendStep(client: WorkerClient, req: StepRequest): Promise<StepOutcome> {
  return new Promise((resolve) => {
    client.step(req, new Metadata(), { deadline: Date.now() + 10_000 }, (err, res) =>
      resolve(
        err
          ? { code: err.code, res: null, details: err.details }
          : { code: null, res: res ?? null },
      ),
    );
  });
}
