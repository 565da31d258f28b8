import { describe, expect, it } from "vitest";
import { DraftGate } from "./draft-gate";

/** Runs `numSteps` steps; a drafting step takes `onMs` and gains `onTokens` per sequence. */
function run(gate: DraftGate, numSteps: number, on: { ms: number; tokens: number }, offMs: number) {
  let numOn = 0;
  for (let stepId = 0; stepId < numSteps; stepId++) {
    const isOn = gate.isDraftingAllowed(stepId);
    expect(gate.isDraftingAllowed(stepId)).toBe(isOn); // one answer per step
    if (isOn) numOn++;
    gate.observe(16, isOn ? 16 * on.tokens : 16, isOn ? on.ms : offMs);
  }
  return numOn / numSteps;
}

describe("DraftGate", () => {
  it("keeps drafting where it pays, probing the other arm a fifth of the time", () => {
    // 1.8 tokens per sequence in 30 ms beats 1 token in 25 ms.
    expect(run(new DraftGate(), 400, { ms: 30, tokens: 1.8 }, 25)).toBeCloseTo(0.8, 1);
  });

  it("stops drafting where it measurably costs, whatever a model predicted", () => {
    // 1.3 tokens per sequence in 40 ms loses to 1 token in 25 ms: after the first period
    // (drafting while nothing is measured) only the probes draft.
    const share = run(new DraftGate(), 400, { ms: 40, tokens: 1.3 }, 25);
    expect(share).toBeGreaterThan(0.15);
    expect(share).toBeLessThan(0.3);
  });

  it("follows a change of load within a few periods", () => {
    const gate = new DraftGate();
    run(gate, 200, { ms: 40, tokens: 1.3 }, 25);
    // Now drafting pays: the probes see it and the gate turns drafting back on.
    let numOn = 0;
    for (let stepId = 200; stepId < 600; stepId++) {
      const isOn = gate.isDraftingAllowed(stepId);
      if (stepId >= 400 && isOn) numOn++;
      gate.observe(16, isOn ? 16 * 2 : 16, isOn ? 26 : 25);
    }
    expect(numOn / 200).toBeCloseTo(0.8, 1);
  });
});
