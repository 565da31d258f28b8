import { describe, expect, it } from "vitest";
import { sumSamples } from "./metrics";

describe("sumSamples", () => {
  const text = [
    "# HELP kiln_request_success_total Finished requests.",
    'kiln_request_success_total{model="m",replica="a",finished_reason="abort"} 3',
    'kiln_request_success_total{model="m",replica="b",finished_reason="abort"} 2',
    'kiln_request_success_total{model="m",replica="a",finished_reason="length"} 7',
    "kiln_request_success_total_extra 100",
    "kiln_worker_num_sequences 4",
  ].join("\n");

  it("sums the samples whose labels match, and only that metric", () => {
    expect(sumSamples(text, "kiln_request_success_total", { finished_reason: "abort" })).toBe(5);
    expect(sumSamples(text, "kiln_request_success_total")).toBe(12);
    expect(sumSamples(text, "kiln_worker_num_sequences")).toBe(4);
    expect(sumSamples(text, "kiln_missing_total")).toBe(0);
  });
});
