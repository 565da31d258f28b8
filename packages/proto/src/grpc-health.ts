import { type ServerUnaryCall, type sendUnaryData, status } from "@grpc/grpc-js";
import {
  type HealthCheckRequest,
  type HealthCheckResponse,
  HealthCheckResponse_ServingStatus,
  type HealthServer,
} from "./generated/index.grpc.health.v1";

export {
  HealthCheckResponse_ServingStatus as GrpcServingStatus,
  HealthClient as GrpcHealthClient,
  HealthService as GrpcHealthService,
} from "./generated/index.grpc.health.v1";

/**
 * The standard `grpc.health.v1.Health/Check` for a Kiln process, so Kubernetes' native gRPC
 * probes (and grpc_health_probe) can ask it. `isServing()` is asked on every call (it may be
 * async; a rejection counts as not serving): SERVING while the process can do its work,
 * NOT_SERVING once it is shutting down or broken. The service
 * names it knows are "" (the whole process) and those in `serviceNames` (e.g. "kiln.v1.Router");
 * any other name is NOT_FOUND, as the protocol specifies.
 */
export function createGrpcHealthServer(
  serviceNames: readonly string[],
  isServing: () => boolean | Promise<boolean>,
): HealthServer {
  const known = new Set(["", ...serviceNames]);
  return {
    check(
      call: ServerUnaryCall<HealthCheckRequest, HealthCheckResponse>,
      callback: sendUnaryData<HealthCheckResponse>,
    ) {
      if (!known.has(call.request.service)) {
        callback({ code: status.NOT_FOUND, details: `unknown service "${call.request.service}"` });
        return;
      }
      Promise.resolve()
        .then(isServing)
        .catch(() => false)
        .then((isOk) => {
          const serving = isOk
            ? HealthCheckResponse_ServingStatus.SERVING
            : HealthCheckResponse_ServingStatus.NOT_SERVING;
          callback(null, { status: serving });
        });
    },
  };
}
