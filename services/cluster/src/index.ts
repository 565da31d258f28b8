export { Child, type ChildExit, type ChildSpec } from "./child";
export { type ClusterOptions, type RunningCluster, startCluster } from "./cluster";
export { resolveDraftModelDir } from "./draft-model";
export { type ModelSpec, NO_MODEL_MESSAGE, tryResolveModelSpec } from "./model-spec";
export { hasRedisServer, type RunningRedis, startRedis } from "./redis";
export { DEFAULT_RESTART_POLICY, RestartBudget, type RestartPolicy } from "./restart-policy";
export {
  type ServiceProcess,
  type ServiceProcessOptions,
  startServiceProcess,
} from "./service-process";
