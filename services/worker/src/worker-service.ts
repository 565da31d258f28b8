import { performance } from "node:perf_hooks";
import {
  type Metadata,
  type ServerDuplexStream,
  type ServerUnaryCall,
  type sendUnaryData,
  status,
} from "@grpc/grpc-js";
import type { Backend, GrammarHosts, SampledToken, StepOutput } from "@kiln/kernels";
import type {
  HealthResponse,
  PrepareGrammarRequest,
  PrepareGrammarResponse,
  StepRequest,
  StepResponse,
  WorkerInfo,
  WorkerServer,
} from "@kiln/proto";
import { GrammarTable } from "./grammar-table";
import { loraFromWire, withLora } from "./lora-input";
import { Pooler } from "./pooling";
import { burstStep, decodeStepsOf } from "./rpc/burst";
import { checkStep, dropRefused } from "./rpc/check-step";
import { sampledToWire, stepDeltaFromWire } from "./rpc/convert";
import { fillPendingInputs } from "./rpc/pending-input";
import { SequenceTable, StepDeltaError } from "./sequence-table";
import type { WorkerTelemetry } from "./telemetry/worker-telemetry";

/**
 * KILN_STEP_PROFILE=1 prints one JSON line per computed step on stdout: the time to apply the
 * step delta and the time inside `backend.step` (thread hand-off, forward pass, sampling).
 * bench/src/compare joins them with the router's lines by stepId. Off by default.
 */
const IS_STEP_PROFILE = process.env.KILN_STEP_PROFILE === "1";

function printStepProfile(stepId: number, applyMs: number, backendMs: number): void {
  const line = { event: "worker-step-profile", stepId, applyMs, backendMs };
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

/** Per sequence of a backend step, the tokens it emitted: its sample, or a verification's run. */
function emittedOf(output: StepOutput): (i: number) => readonly SampledToken[] | null {
  return (i) => {
    const sampled = output.sampled[i];
    return sampled ? (output.verified?.[i] ?? [sampled]) : null;
  };
}

/** A failed step's gRPC status. */
interface StepError {
  readonly code: status;
  readonly details: string;
}

function stepError(code: status, details: string): StepError {
  return { code, details };
}

/** A step running longer than this makes Health answer NOT_SERVING (KILN_WORKER_MAX_STEP_MS). */
export const DEFAULT_MAX_STEP_MS = 120_000;

export interface WorkerIdentity {
  readonly workerId: string;
  /** Unique per process start: tells the router that a worker at a known address restarted. */
  readonly instanceId: string;
  readonly model: string;
  readonly eosTokenIds: readonly number[];
  /** LoRA slots the backend holds (reported in WorkerInfo); 0 when absent. */
  readonly maxLoras?: number;
  /** Tensor-parallel group size (ADR 0018); the service runs on rank 0. 1 when absent. */
  readonly tpSize?: number;
  /** CPU threads the backend computes on, every rank together; 0 on a GPU (WorkerInfo). */
  readonly numComputeThreads?: number;
}

/**
 * The Worker gRPC service around one backend. Steps run one at a time: a second concurrent
 * Step is refused with FAILED_PRECONDITION, while StepStream runs its steps in order (the router
 * may send step N + 1 before N has returned; ADR 0021). Every Step is
 * checked before it changes anything (rpc/check-step.ts): INVALID_ARGUMENT for a bad step, a
 * per-sequence failure for one bad sequence. Health answers at once, also while a step runs,
 * because the backend computes off the event loop, and reflects the backend (see isServing).
 * `telemetry`, when given, times every step and traces it.
 */
export function createWorkerService(
  backend: Backend,
  identity: WorkerIdentity,
  onShutdown: () => void,
  telemetry: WorkerTelemetry | null = null,
  maxStepMs = DEFAULT_MAX_STEP_MS,
  /** Structured output's grammar threads (ADR 0016); null: a sequence with a grammar is refused. */
  grammarHosts: GrammarHosts | null = null,
): WorkerServer {
  const table = new SequenceTable(backend.info.blockSize, backend.info.numBlocks);
  const grammars = new GrammarTable(grammarHosts);
  telemetry?.trackSequences(() => table.numSequences);
  const info: WorkerInfo = {
    workerId: identity.workerId,
    model: identity.model,
    backend: backend.info.name,
    numBlocks: backend.info.numBlocks,
    blockSize: backend.info.blockSize,
    vocabSize: backend.info.vocabSize,
    maxModelLen: backend.info.maxModelLen,
    tpRank: 0,
    tpSize: identity.tpSize ?? 1,
    eosTokenIds: [...identity.eosTokenIds],
    instanceId: identity.instanceId,
    maxLoras: identity.maxLoras ?? 0,
    numComputeThreads: identity.numComputeThreads ?? 0,
  };
  let isStepRunning = false;
  /** performance.now() when the running step started (meaningful while isStepRunning). */
  let stepStartedAt = 0;
  let lastStepId: number | null = null;
  const checkLimits = { ...backend.info, instanceId: identity.instanceId };
  const checkState = {
    get lastStepId() {
      return lastStepId;
    },
    blockTableLenOf: (seqId: number) => table.blockTableLenOf(seqId),
  };
  const pooler = new Pooler();

  const vocabSize = backend.info.vocabSize;

  /**
   * Appends to each sequence's run the tokens `emittedOf` gives for it (by its index in `req`;
   * null or empty: none), and records them (the worker's copy of the output, for penalties; the
   * grammar matcher) before the next step.
   */
  function recordRuns(
    req: StepRequest,
    emittedOf: (i: number) => readonly SampledToken[] | null | undefined,
    seqIdToRun: Map<number, SampledToken[]>,
  ): void {
    req.sequences.forEach((seq, i) => {
      const emitted = emittedOf(i);
      if (!emitted?.length) return;
      for (const t of emitted) {
        table.recordSampled(seq.seqId, t.tokenId);
        grammars.accept(seq.seqId, t.tokenId);
      }
      const run = seqIdToRun.get(seq.seqId);
      if (run) run.push(...emitted);
      else seqIdToRun.set(seq.seqId, [...emitted]);
    });
  }

  /**
   * Multi-step decode (ADR 0028): the steps of a burst after the first, each sequence's input the
   * token it sampled last, until every sequence ran its num_steps or sampled a stop id. Each step
   * goes through the table and the backend like a step of its own (no delta: the first step
   * brought every block), with grammar masks computed for it.
   */
  async function runFurtherSteps(
    req: StepRequest,
    seqIdToRun: Map<number, SampledToken[]>,
  ): Promise<void> {
    const lastTokenOf = (seqId: number) => seqIdToRun.get(seqId)?.at(-1)?.tokenId ?? null;
    for (let j = 1; ; j++) {
      const next = burstStep(req, j, lastTokenOf);
      if (next === null) return;
      const lora = loraFromWire(next, info.maxLoras);
      const input = withLora(table.applyStep(stepDeltaFromWire(next)), lora);
      const masked = await grammars.withMasks(next, input, vocabSize);
      recordRuns(next, emittedOf(await backend.step(masked)), seqIdToRun);
    }
  }

  async function runStep(wireReq: StepRequest): Promise<StepResponse> {
    const startedAt = performance.now();
    // Overlapped steps: tokens the router planned before it knew them (ADR 0021).
    const filled = fillPendingInputs(wireReq, (seqId) => table.lastSampledOf(seqId));
    // Checked whole before anything changes: a bad step leaves every sequence's state and KV.
    const checked = checkStep(filled.request, checkState, checkLimits);
    lastStepId = checked.request.stepId;
    const grammarFailures = await grammars.prepare(checked.request);
    const req = dropRefused(checked.request, grammarFailures).request;
    const failures = [...filled.failures, ...checked.failures, ...grammarFailures];
    const poolingPlan = pooler.planFor(req);
    const lora = loraFromWire(req, info.maxLoras);
    const applied = withLora(table.applyStep(stepDeltaFromWire(req)), lora);
    const base = poolingPlan ? { ...applied, ...poolingPlan } : applied;
    // Grammar masks computed while a threaded backend runs the forward pass (ADR 0016).
    const deferred = backend.info.acceptsDeferredMasks
      ? grammars.deferMasks(req, base, backend.info.vocabSize)
      : null;
    const input = deferred?.input ?? (await grammars.withMasks(req, base, backend.info.vocabSize));
    const appliedAt = performance.now();
    // A step may only carry removals (aborted sequences); there is nothing to compute then.
    if (input.queryLens.length === 0) {
      return { stepId: req.stepId, results: [], computeSeconds: 0, failures: [...failures] };
    }
    // Multi-step decode (ADR 0028): on the backend's thread when it can (no grammar masks).
    const decodeSteps =
      backend.info.runsDecodeSteps && deferred === null ? decodeStepsOf(req, input) : null;
    const stepping = backend.step(decodeSteps ? { ...input, decodeSteps } : input);
    stepping.catch(() => {}); // awaited below; a rejection during fill is not unhandled
    if (deferred !== null) await deferred.fill();
    const output = await stepping;
    // A backend that ignored draft tokens sampled after the last draft, not after the last
    // token: fail the step rather than emit a token at the wrong position (ADR 0017).
    if (output.verified === undefined && input.samples.some((s) => s?.draftTokenIds?.length)) {
      throw new Error(`the ${backend.info.name} backend does not verify draft tokens`);
    }
    const embeddings =
      poolingPlan && output.pooled ? pooler.collect(req, poolingPlan, output.pooled) : null;
    // Per sequence, the tokens it emits: a verification's several (ADR 0017) or a burst's.
    const seqIdToRun = new Map<number, SampledToken[]>();
    recordRuns(req, emittedOf(output), seqIdToRun);
    const runs = output.runs;
    if (runs) recordRuns(req, (i) => runs[i], seqIdToRun);
    else await runFurtherSteps(req, seqIdToRun);
    if (IS_STEP_PROFILE) {
      printStepProfile(req.stepId, appliedAt - startedAt, performance.now() - appliedAt);
    }
    const results: StepResponse["results"] = [];
    req.sequences.forEach((seq, i) => {
      const run = seqIdToRun.get(seq.seqId);
      if (!run) return;
      const token = sampledToWire(run[0]!);
      const embedding = embeddings?.get(i);
      results.push({
        seqId: seq.seqId,
        token: embedding ? { ...token, embedding } : token,
        nextTokens: run.slice(1).map(sampledToWire),
      });
    });
    const computeSeconds = (performance.now() - startedAt) / 1000;
    return { stepId: req.stepId, results, computeSeconds, failures: [...failures] };
  }

  /**
   * One step (Step and StepStream): refused with FAILED_PRECONDITION while another runs;
   * INVALID_ARGUMENT for a step delta the worker's state cannot take, INTERNAL otherwise. The
   * step is over before its answer leaves: the router may send the next one at once.
   */
  function handleStep(req: StepRequest, metadata: Metadata): Promise<StepResponse> {
    if (isStepRunning) {
      telemetry?.countRefusedStep();
      return Promise.reject(stepError(status.FAILED_PRECONDITION, "a step is already running"));
    }
    isStepRunning = true;
    stepStartedAt = performance.now();
    const shape = {
      stepId: req.stepId,
      numSeqs: req.sequences.length,
      numNewSeqs: req.newSequences.length,
    };
    return (
      telemetry ? telemetry.observeStep(metadata, shape, () => runStep(req)) : runStep(req)
    ).then(
      (res) => {
        isStepRunning = false;
        return res;
      },
      (err: unknown) => {
        isStepRunning = false;
        const code = err instanceof StepDeltaError ? status.INVALID_ARGUMENT : status.INTERNAL;
        throw stepError(code, err instanceof Error ? err.message : String(err));
      },
    );
  }

  /**
   * Serving unless the backend is dead (its compute thread crashed or exited) or a step has run
   * past `maxStepMs` (wedged): a zombie worker must fail its health checks so the router fails
   * the replica and the supervisor or Kubernetes restarts the process.
   */
  function isServing(): boolean {
    if (backend.deadReason?.() != null) return false;
    return !(isStepRunning && performance.now() - stepStartedAt > maxStepMs);
  }

  return {
    info(_call: ServerUnaryCall<unknown, WorkerInfo>, callback: sendUnaryData<WorkerInfo>) {
      callback(null, info);
    },
    step(call: ServerUnaryCall<StepRequest, StepResponse>, callback: sendUnaryData<StepResponse>) {
      handleStep(call.request, call.metadata).then(
        (res) => callback(null, res),
        (err: StepError) => callback(err),
      );
    },
    stepStream(call: ServerDuplexStream<StepRequest, StepResponse>) {
      // One step at a time, answered in order; a failed step ends the stream with its status.
      let chain = Promise.resolve();
      let isEnded = false;
      /** Steps received and not started: the router planned them ahead (ADR 0021). */
      let numQueued = 0;
      /** Answers, and the end or error after them, waiting for the next turn of the loop. */
      let numDeferred = 0;
      /**
       * Writes an answer, or ends the stream, in step order. While a step queued behind this one
       * is there, it starts first (its input is this one's sample): the answer is encoded and
       * written on the next turn, while the backend computes that step, and anything after it
       * (the next answer, a failed step's error, the end) waits its turn.
       */
      const inOrder = (send: () => void) => {
        if (numQueued === 0 && numDeferred === 0) {
          send();
          return;
        }
        numDeferred++;
        setImmediate(() => {
          numDeferred--;
          send();
        });
      };
      call.on("data", (req: StepRequest) => {
        numQueued++;
        chain = chain.then(async () => {
          numQueued--;
          if (isEnded) return;
          try {
            const res = await handleStep(req, call.metadata);
            inOrder(() => call.write(res));
          } catch (err) {
            isEnded = true;
            const error = Object.assign(new Error((err as StepError).details), err);
            inOrder(() => call.emit("error", error));
          }
        });
      });
      call.on("end", () => {
        void chain.then(() => {
          if (!isEnded) inOrder(() => call.end());
          isEnded = true;
        });
      });
      call.on("cancelled", () => {
        isEnded = true;
      });
    },
    health(
      _call: ServerUnaryCall<unknown, HealthResponse>,
      callback: sendUnaryData<HealthResponse>,
    ) {
      callback(null, { serving: isServing(), draining: false });
    },
    prepareGrammar(
      call: ServerUnaryCall<PrepareGrammarRequest, PrepareGrammarResponse>,
      callback: sendUnaryData<PrepareGrammarResponse>,
    ) {
      const spec = call.request.grammar;
      if (!spec) return callback({ code: status.INVALID_ARGUMENT, details: "grammar is missing" });
      // Compiled on a grammar thread: steps go on meanwhile.
      grammars.prepareGrammar(spec).then(
        (error) => callback(null, { error: error ?? "" }),
        (err: unknown) => callback({ code: status.INTERNAL, details: String(err) }),
      );
    },
    shutdown(_call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<object>) {
      callback(null, {});
      setImmediate(onShutdown);
    },
  };
}
