import { randomUUID } from "node:crypto";
import {
  type ServerUnaryCall,
  type ServerWritableStream,
  type sendUnaryData,
  status,
} from "@grpc/grpc-js";
import { asRequestId, type NewRequest } from "@kiln/engine-core";
import {
  type AbortRequest,
  type AbortResponse,
  type GenerateEvent,
  type GenerateRequest,
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

export interface RouterLimits {
  /** Requests that may wait for their first step; past it Generate fails with RESOURCE_EXHAUSTED. */
  readonly maxNumWaiting: number;
}

/**
 * The Router gRPC service. Generate validates, routes the request to a replica and streams its
 * events; a cancelled call (client gone, deadline passed) aborts the request so its blocks
 * return to the pool before the next step.
 */
export function createRouterService(replicas: ReplicaSet, limits: RouterLimits): RouterServer {
  return {
    generate(call: ServerWritableStream<GenerateRequest, GenerateEvent>) {
      const req = call.request;
      // grpc-js ends a server stream with a status when the call emits an error.
      const fail = (code: status, details: string) => {
        call.emit("error", Object.assign(new Error(details), { code, details }));
      };
      if (req.promptTokenIds.length === 0)
        return fail(status.INVALID_ARGUMENT, "prompt_token_ids is empty");
      if (replicas.numWaitingRequests() >= limits.maxNumWaiting) {
        return fail(
          status.RESOURCE_EXHAUSTED,
          `the waiting queue is full (${limits.maxNumWaiting} requests)`,
        );
      }
      const cacheSalt = req.cacheSalt || null;
      const replica = replicas.route(req.promptTokenIds, cacheSalt);
      if (!replica) return fail(status.UNAVAILABLE, "no worker is connected");
      const requestId = req.requestId || randomUUID();
      if (replicas.findRequest(requestId)) {
        return fail(status.ALREADY_EXISTS, `request ${requestId} is already running`);
      }
      const n = Math.max(1, req.n);
      let isEnded = false;
      const record: RequestRecord = {
        requestId,
        replicaId: replica.replicaId,
        promptTokenIds: req.promptTokenIds,
        // proto3 zero values mean "off" for every knob (the worker maps topP 0 and penalty 0 to 1).
        sampling: req.sampling ?? SamplingParams.fromPartial({}),
        outputTokenIds: Array.from({ length: n }, () => []),
        emit: (event) => {
          if (!isEnded) call.write(event);
        },
        end: () => {
          if (isEnded) return;
          isEnded = true;
          call.end();
        },
      };
      const newRequest = toNewRequest(req, requestId, record.sampling, n);
      const error = replica.tryAdd(newRequest, record, extractTraceContext(call.metadata));
      if (error) return fail(status.INVALID_ARGUMENT, error);
      call.on("cancelled", () => {
        isEnded = true;
        replica.abort(requestId);
      });
    },
    abort(
      call: ServerUnaryCall<AbortRequest, AbortResponse>,
      callback: sendUnaryData<AbortResponse>,
    ) {
      const replica = replicas.findRequest(call.request.requestId);
      callback(null, { found: replica?.abort(call.request.requestId) ?? false });
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
          };
        }),
      });
    },
    registerWorker(
      call: ServerUnaryCall<RegisterWorkerRequest, RegisterWorkerResponse>,
      callback: sendUnaryData<RegisterWorkerResponse>,
    ) {
      const { address, replicaId, instanceId } = call.request;
      replicas
        .register(address, replicaId || "replica-0", instanceId)
        .then((accepted) => callback(null, { accepted }));
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
  };
}
