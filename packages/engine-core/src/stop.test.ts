import { describe, expect, it } from "vitest";
import { checkStop, type StopCriteria, stopTokenIdsOf } from "./stop";

const criteria = (overrides: Partial<StopCriteria> = {}): StopCriteria => ({
  maxTokens: null,
  minTokens: 0,
  eosTokenIds: [2],
  stopTokenIds: [],
  ignoreEos: false,
  ...overrides,
});

describe("checkStop", () => {
  it("stops on any EOS id unless ignoreEos", () => {
    expect(checkStop(criteria({ eosTokenIds: [2, 3] }), 3, 1, 10, 100)).toEqual({
      reason: "stop",
      stopTokenId: null,
    });
    expect(checkStop(criteria({ ignoreEos: true }), 2, 1, 10, 100)).toBeNull();
  });

  it("reports which stop token id matched, even with ignoreEos", () => {
    const stop = criteria({ ignoreEos: true, stopTokenIds: [7] });
    expect(checkStop(stop, 7, 1, 10, 100)).toEqual({ reason: "stop", stopTokenId: 7 });
  });

  it("ignores stop tokens until minTokens tokens precede them", () => {
    const stop = criteria({ minTokens: 2, stopTokenIds: [7] });
    expect(checkStop(stop, 2, 2, 10, 100)).toBeNull();
    expect(checkStop(stop, 7, 2, 10, 100)).toBeNull();
    expect(checkStop(stop, 7, 3, 10, 100)).toEqual({ reason: "stop", stopTokenId: 7 });
  });

  it("caps the length by maxTokens and by the context length; a stop token wins a tie", () => {
    expect(checkStop(criteria({ maxTokens: 3 }), 5, 3, 10, 100)?.reason).toBe("length");
    expect(checkStop(criteria(), 5, 3, 100, 100)?.reason).toBe("length");
    expect(checkStop(criteria({ maxTokens: 3 }), 2, 3, 10, 100)?.reason).toBe("stop");
    expect(checkStop(criteria({ maxTokens: 3 }), 5, 2, 99, 100)).toBeNull();
  });

  it("lists the ids the sampler bans before minTokens", () => {
    expect(stopTokenIdsOf(criteria({ stopTokenIds: [7, 2] }))).toEqual([2, 7]);
    expect(stopTokenIdsOf(criteria({ stopTokenIds: [7], ignoreEos: true }))).toEqual([7]);
  });
});
