import { Counter, Gauge, type Registry } from "prom-client";

type L = "service" | "cause";

/**
 * The `npm start` supervisor's view of its children: `kiln_supervisor_restarts_total{service,
 * cause}` counts restarts after an unexpected exit (`cause` is `SIGKILL`, `exit_1`, ...), and
 * `kiln_supervisor_up{service}` is 1 while the child is running and 0 while it waits for a
 * restart.
 */
export class SupervisorMetrics {
  readonly restarts: Counter<L>;
  readonly up: Gauge<"service">;

  constructor(registry: Registry, services: readonly string[]) {
    const registers = [registry];
    this.restarts = new Counter({
      name: "kiln_supervisor_restarts_total",
      help: "Children the supervisor restarted after an unexpected exit, by exit cause.",
      labelNames: ["service", "cause"],
      registers,
    });
    this.up = new Gauge({
      name: "kiln_supervisor_up",
      help: "1 while the supervised child runs, 0 while it is down.",
      labelNames: ["service"],
      registers,
    });
    for (const service of services) this.up.set({ service }, 0);
  }

  restarted(service: string, cause: string): void {
    this.restarts.inc({ service, cause });
  }

  setUp(service: string, isUp: boolean): void {
    this.up.set({ service }, isUp ? 1 : 0);
  }
}
