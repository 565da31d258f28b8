import { StepRequest } from "@kiln/proto";
import { describe, expect, it } from "vitest";
import { loraFromWire } from "./lora-input";
import { StepDeltaError } from "./sequence-table";

const seq = (seqId: number, loraSlot: number) => ({
  seqId,
  tokenIds: [1],
  numComputedTokens: 0,
  newBlockIds: [],
  doSample: true,
  outputIndex: 0,
  bannedTokenIds: [],
  loraSlot,
});

describe("loraFromWire", () => {
  it("maps 1-based wire slots to backend slots (-1 = base) and passes loads", () => {
    const req = StepRequest.fromPartial({
      sequences: [seq(1, 0), seq(2, 2), seq(3, 1)],
      loraLoads: [{ slot: 1, name: "a", path: "/x/a" }],
    });
    const part = loraFromWire(req, 2);
    expect([...part.loraSlots!]).toEqual([-1, 1, 0]);
    expect(part.loraLoads).toEqual([{ slot: 1, path: "/x/a" }]);
  });

  it("leaves a base-only step untouched", () => {
    expect(loraFromWire(StepRequest.fromPartial({ sequences: [seq(1, 0)] }), 0)).toEqual({});
  });

  it("refuses slots outside the worker's table before anything is applied", () => {
    const bad = StepRequest.fromPartial({ sequences: [seq(1, 3)] });
    expect(() => loraFromWire(bad, 2)).toThrow(StepDeltaError);
    const badLoad = StepRequest.fromPartial({ loraLoads: [{ slot: 2, name: "a", path: "/a" }] });
    expect(() => loraFromWire(badLoad, 2)).toThrow(/LoRA slot 2 is outside 0..1/);
  });
});
