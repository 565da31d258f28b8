import { describe, expect, it } from "vitest";
import { mergeExpositions, parseExposition } from "./upstream-metrics";

const OWN = `# HELP kiln_num_requests_waiting Requests waiting to be scheduled.
# TYPE kiln_num_requests_waiting gauge
kiln_num_requests_waiting{model="m",replica="r0"} 3
`;
const ROUTER = `# HELP kiln_num_requests_waiting Requests waiting to be scheduled.
# TYPE kiln_num_requests_waiting gauge
kiln_num_requests_waiting{model="m",replica="r0"} 4
# HELP process_cpu_seconds_total CPU.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 1.5
# HELP kiln_generation_tokens_total Generated tokens.
# TYPE kiln_generation_tokens_total counter
kiln_generation_tokens_total{model="m",replica="r0"} 16
`;
const worker = (replica: string, n: number) => `# HELP kiln_worker_step_failures_total Failed steps.
# TYPE kiln_worker_step_failures_total counter
kiln_worker_step_failures_total{model="m",replica="${replica}"} ${n}
`;

describe("mergeExpositions", () => {
  it("keeps the gateway's families, adds the upstreams' other kiln_* families once", () => {
    const merged = mergeExpositions(OWN, [
      ROUTER,
      worker("r0", 1),
      worker("r1", 2),
      worker("r1", 9),
    ]);
    const families = parseExposition(merged);
    expect(families.map((f) => f.name)).toEqual([
      "kiln_num_requests_waiting",
      "kiln_generation_tokens_total",
      "kiln_worker_step_failures_total",
    ]);
    // The gateway's own copy wins; the router's duplicate family is dropped, not appended.
    expect(families[0]!.samples).toEqual(['kiln_num_requests_waiting{model="m",replica="r0"} 3']);
    // One header for the two workers; a repeated series is kept once (the first).
    expect(families[2]!.header).toHaveLength(2);
    expect(families[2]!.samples).toEqual([
      'kiln_worker_step_failures_total{relayed_by="gateway",model="m",replica="r0"} 1',
      'kiln_worker_step_failures_total{relayed_by="gateway",model="m",replica="r1"} 2',
    ]);
    expect(merged).not.toContain("process_cpu_seconds_total");
  });

  it("marks relayed samples with and without labels", () => {
    const text = `# TYPE kiln_a counter\nkiln_a 1\n# TYPE kiln_b gauge\nkiln_b{} 2\n`;
    const merged = parseExposition(mergeExpositions("", [text]));
    expect(merged.flatMap((f) => f.samples)).toEqual([
      'kiln_a{relayed_by="gateway"} 1',
      'kiln_b{relayed_by="gateway"} 2',
    ]);
  });

  it("returns the gateway's text unchanged without upstream families", () => {
    expect(mergeExpositions(OWN, [])).toBe(OWN);
  });
});
