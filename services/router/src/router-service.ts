import { randomUUID } from "node:crypto";
import {
  type ServerUnaryCall,
  type ServerWritableStream,
  type sendUnaryData,
  status,
} from "@grpc/grpc-js";
import { asAdapterId, asRequestId, type NewRequest } from "@kiln/engine-core";
import {
  type AbortRequest,
  type AbortResponse,
  type GenerateEvent,
  type GenerateRequest,
  PoolingType,
  type RegisterWorkerRequest,
  type RegisterWorkerResponse,
  type RouterHealthResponse,
  type RouterServer,
  SamplingParams,
  type StatsResponse,
} from "@kiln/proto";
import { extractTraceContext } from "@kiln/telemetry";
import { schedulerPriority } from "./priority-class";
import type { ReplicaSet } from "./replica-set";
import type { RequestRecord } from "./request-record";
import { callDeadlineMs, RequestRetry } from "./retry";
import {
  checkGenerateForModel,
  checkGenerateShape,
  checkRegisterWorker,
} from "./rpc/validate-generate";

export interface RouterLimits {
  /** Requests that may wait for their first step; past it Generate fails with RESOURCE_EXHAUSTED. */
  readonly maxNumWaiting: number;
  /** A request lost before its first token waits this long for a replica to retry on (retry.ts); 0: off. */
  readonly retryWaitMs?: number;
}

/**
 * The Router gRPC service. Generate validates, routes the request to a replica and streams its
 * events; a cancelled call (client gone, deadline passed) aborts the request so its blocks
 * return to the pool before the next step.
 */
export function createRouterService(replicas: ReplicaSet, limits: RouterLimits): RouterServer {
  /** Requests waiting for their grammar to compile: they count against the waiting queue. */
  let numPreparing = 0;
  return {
    generate(call: ServerWritableStream<GenerateRequest, GenerateEvent>) {
      const req = call.request;
      // grpc-js ends a server stream with a status when the call emits an error.
      const fail = (code: status, details: string) => {
        call.emit("error", Object.assign(new Error(details), { code, details }));
      };
      const shapeError = checkGenerateShape(req);
      if (shapeError) return fail(status.INVALID_ARGUMENT, shapeError);
      if (call.cancelled) return; // the client left before the handler ran
      if (replicas.numWaitingRequests() + numPreparing >= limits.maxNumWaiting) {
        return fail(
          status.RESOURCE_EXHAUSTED,
          `the waiting queue is full (${limits.maxNumWaiting} requests)`,
        );
      }
      const cacheSalt = req.cacheSalt || null;
      const adapter = req.adapter || null;
      if (adapter !== null && req.adapterPath === "") {
        return fail(status.INVALID_ARGUMENT, `adapter ${adapter} comes without adapter_path`);
      }
      const replica = replicas.route(req.promptTokenIds, cacheSalt, adapter);
      if (!replica) return fail(status.UNAVAILABLE, "no worker is connected");
      const modelError = checkGenerateForModel(req, replica.vocabSize);
      if (modelError) return fail(status.INVALID_ARGUMENT, modelError);
      const requestId = req.requestId || randomUUID();
      if (replicas.findRequest(requestId)) {
        return fail(status.ALREADY_EXISTS, `request ${requestId} is already running`);
      }
      const n = Math.max(1, req.n);
      const poolingError = checkPooling(req, n);
      if (poolingError) return fail(status.INVALID_ARGUMENT, poolingError);
      let isEnded = false;
      const record: RequestRecord = {
        requestId,
        replicaId: replica.replicaId,
        promptTokenIds: req.promptTokenIds,
        // proto3 zero values mean "off" for every knob (the worker maps topP 0 and penalty 0 to 1).
        sampling: req.sampling ?? SamplingParams.fromPartial({}),
        pooling: req.pooling,
        grammar: req.grammar,
        outputTokenIds: Array.from({ length: n }, () => []),
        adapter: adapter === null ? null : { name: adapter, path: req.adapterPath },
        emit: (event) => {
          if (!isEnded) call.write(event);
        },
        end: () => {
          if (isEnded) return;
          isEnded = true;
          call.end();
        },
        onLost: (reason) => retry.tryTakeOver(record, reason),
      };
      const newRequest = toNewRequest(req, requestId, record.sampling, n);
      const parent = extractTraceContext(call.metadata);
      const retryOptions = { retryWaitMs: limits.retryWaitMs ?? 0 };
      const retry = new RequestRetry(
        replicas,
        newRequest,
        parent,
        retryOptions,
        callDeadlineMs(call),
      );
      const admit = () => {
        const error = replica.tryAdd(newRequest, record, parent);
        if (error) return fail(status.INVALID_ARGUMENT, error);
        const onCancelled = () => {
          isEnded = true;
          retry.cancel();
          // A retried request runs on another replica than the one first routed to.
          (replicas.findRequest(requestId) ?? replica).abort(requestId);
        };
        call.on("cancelled", onCancelled);
        // grpc-js emits "cancelled" once: a call cancelled before the listener was attached
        // (client gone, deadline passed) must still be aborted here.
        if (call.cancelled) onCancelled();
      };
      if (!req.grammar?.kind) return admit();
      // Structured output: the grammar is compiled on the worker's grammar threads before the
      // request may be scheduled, so no step of other sequences waits for it (ADR 0016).
      numPreparing++;
      void replica.prepareGrammar(req.grammar).then((grammarError) => {
        numPreparing--;
        if (call.cancelled) return;
        if (grammarError) {
          return fail(status.INVALID_ARGUMENT, `the grammar cannot be compiled: ${grammarError}`);
        }
        if (replicas.findRequest(requestId)) {
          return fail(status.ALREADY_EXISTS, `request ${requestId} is already running`);
        }
        admit();
      });
    },
    abort(
      call: ServerUnaryCall<AbortRequest, AbortResponse>,
      callback: sendUnaryData<AbortResponse>,
    ) {
      const { requestId, index, isStop } = call.request;
      const replica = replicas.findRequest(requestId);
      if (!replica) return callback(null, { found: false });
      const found =
        index === undefined
          ? replica.abort(requestId)
          : replica.abortChoice(requestId, index, isStop);
      callback(null, { found });
    },
    health(
      _call: ServerUnaryCall<unknown, RouterHealthResponse>,
      callback: sendUnaryData<RouterHealthResponse>,
    ) {
      const numHealthy = replicas.healthyReplicas.length;
      callback(null, {
        serving: numHealthy > 0,
        numHealthyGroups: numHealthy,
        numGroups: replicas.replicas.length,
      });
    },
    stats(_call: ServerUnaryCall<unknown, StatsResponse>, callback: sendUnaryData<StatsResponse>) {
      callback(null, {
        replicas: replicas.replicas.map((replica) => {
          const s = replica.stats();
          return {
            replicaId: replica.replicaId,
            healthy: replica.isHealthy,
            numRunning: s?.numRunningRequests ?? 0,
            numWaiting: s?.numWaitingRequests ?? 0,
            numBlocks: s?.numBlocks ?? 0,
            numUsedBlocks: s?.numUsedBlocks ?? 0,
            prefixCacheQueries: s?.prefixCacheQueryTokens ?? 0,
            prefixCacheHits: s?.prefixCacheHitTokens ?? 0,
            numPreemptions: s?.numPreemptions ?? 0,
            numRequestsRouted: replica.counters.numRequestsRouted,
            numStepsPlannedAhead: replica.counters.numStepsPlannedAhead,
            residentAdapters: [...(s?.residentAdapters ?? [])],
            runningAdapters: [...(s?.runningAdapters ?? [])],
            waitingAdapters: [...(s?.waitingAdapters ?? [])],
            maxLoras: s?.maxLoras ?? 0,
          };
        }),
      });
    },
    registerWorker(
      call: ServerUnaryCall<RegisterWorkerRequest, RegisterWorkerResponse>,
      callback: sendUnaryData<RegisterWorkerResponse>,
    ) {
      const invalid = checkRegisterWorker(call.request);
      if (invalid) return callback({ code: status.INVALID_ARGUMENT, details: invalid });
      const { address, replicaId, instanceId, role } = call.request;
      replicas.register(address, replicaId || "replica-0", instanceId, role).then(
        (accepted) => callback(null, { accepted }),
        (err: unknown) => callback({ code: status.INTERNAL, details: String(err) }),
      );
    },
  };
}

function toNewRequest(
  req: GenerateRequest,
  requestId: string,
  sampling: SamplingParams,
  n: number,
): NewRequest<SamplingParams> {
  return {
    requestId: asRequestId(requestId),
    promptTokenIds: req.promptTokenIds,
    sampling,
    n,
    priority: schedulerPriority(req.priority, req.priorityClass),
    maxTokens: req.maxTokens > 0 ? req.maxTokens : null,
    minTokens: req.minTokens,
    stopTokenIds: req.stopTokenIds,
    ignoreEos: req.ignoreEos,
    cacheSalt: req.cacheSalt || null,
    tenant: req.tenant || null,
    tenantWeight: req.tenantWeight > 0 ? req.tenantWeight : 1,
    adapterId: req.adapter ? asAdapterId(req.adapter) : null,
    isSpeculative: !req.disableSpeculation,
  };
}

/** An embedding (pooling) request is prefill-only: one sequence, one step past the prompt. */
function checkPooling(req: GenerateRequest, n: number): string | null {
  if (req.pooling === PoolingType.POOLING_TYPE_NONE) return null;
  if (n !== 1 || req.maxTokens !== 1) return "a pooling request needs n = 1 and max_tokens = 1";
  return null;
}
