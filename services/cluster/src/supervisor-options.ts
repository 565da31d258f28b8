import { parseArgs } from "node:util";
import { DEFAULT_RESTART_POLICY, type RestartPolicy } from "./restart-policy";

/** The supervisor's own settings (`npm start -- --flag`), each with an environment variable. */
export interface SupervisorOptions {
  readonly restartPolicy: RestartPolicy;
  /** Port of the supervisor's `/metrics` (0: any free one), or null when not served. */
  readonly metricsPort: number | null;
  /** Worker processes per group (`--tensor-parallel-size`, KILN_TENSOR_PARALLEL_SIZE; 1). */
  readonly tensorParallelSize: number;
  /** Worker groups, each a router replica (`--data-parallel-size`, KILN_DATA_PARALLEL_SIZE; 1). */
  readonly dataParallelSize: number;
}

function intSetting(text: string | undefined, fallback: number, name: string, min = 0): number {
  if (text === undefined || text === "") return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n < min) throw new Error(`${name}: expected an integer ≥ ${min}`);
  return n;
}

/**
 * Flags win over environment variables, which win over the defaults:
 * `--max-restarts` / KILN_SUPERVISOR_MAX_RESTARTS (5), `--restart-window` /
 * KILN_SUPERVISOR_RESTART_WINDOW_S (60), `--restart-backoff-ms` / KILN_SUPERVISOR_BACKOFF_MS
 * (500), `--restart-backoff-max-ms` / KILN_SUPERVISOR_BACKOFF_MAX_MS (10000),
 * `--supervisor-metrics-port` / KILN_SUPERVISOR_METRICS_PORT (off), `--tensor-parallel-size` /
 * KILN_TENSOR_PARALLEL_SIZE (1), `--data-parallel-size` / KILN_DATA_PARALLEL_SIZE (1). Throws
 * naming the flag.
 */
export function parseSupervisorOptions(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
): SupervisorOptions {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      "max-restarts": { type: "string" },
      "restart-window": { type: "string" },
      "restart-backoff-ms": { type: "string" },
      "restart-backoff-max-ms": { type: "string" },
      "supervisor-metrics-port": { type: "string" },
      "tensor-parallel-size": { type: "string" },
      "data-parallel-size": { type: "string" },
    },
  });
  const d = DEFAULT_RESTART_POLICY;
  const metricsText = values["supervisor-metrics-port"] ?? env.KILN_SUPERVISOR_METRICS_PORT;
  const metricsPort =
    metricsText === undefined || metricsText === ""
      ? null
      : intSetting(metricsText, 0, "--supervisor-metrics-port");
  if (metricsPort !== null && metricsPort > 65535)
    throw new Error("--supervisor-metrics-port: expected a port number");
  return {
    restartPolicy: {
      maxRestarts: intSetting(
        values["max-restarts"] ?? env.KILN_SUPERVISOR_MAX_RESTARTS,
        d.maxRestarts,
        "--max-restarts",
      ),
      windowMs:
        1000 *
        intSetting(
          values["restart-window"] ?? env.KILN_SUPERVISOR_RESTART_WINDOW_S,
          d.windowMs / 1000,
          "--restart-window",
          1,
        ),
      backoffInitialMs: intSetting(
        values["restart-backoff-ms"] ?? env.KILN_SUPERVISOR_BACKOFF_MS,
        d.backoffInitialMs,
        "--restart-backoff-ms",
      ),
      backoffMaxMs: intSetting(
        values["restart-backoff-max-ms"] ?? env.KILN_SUPERVISOR_BACKOFF_MAX_MS,
        d.backoffMaxMs,
        "--restart-backoff-max-ms",
      ),
    },
    metricsPort,
    tensorParallelSize: intSetting(
      values["tensor-parallel-size"] ?? env.KILN_TENSOR_PARALLEL_SIZE,
      1,
      "--tensor-parallel-size",
      1,
    ),
    dataParallelSize: intSetting(
      values["data-parallel-size"] ?? env.KILN_DATA_PARALLEL_SIZE,
      1,
      "--data-parallel-size",
      1,
    ),
  };
}
