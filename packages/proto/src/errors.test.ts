import { status } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { codeFromGrpcStatus, ERROR_TABLE, StepRequest } from "./index";

describe("ERROR_TABLE", () => {
  it("gives every code a client or server HTTP status and an OpenAI type", () => {
    for (const [code, mapping] of Object.entries(ERROR_TABLE)) {
      expect(mapping.httpStatus, code).toBeGreaterThanOrEqual(400);
      expect(mapping.httpStatus, code).toBeLessThan(600);
      expect(mapping.openaiType.length, code).toBeGreaterThan(0);
    }
    expect(ERROR_TABLE.OVERLOADED.httpStatus).toBe(429);
    expect(ERROR_TABLE.WORKER_LOST.grpcStatus).toBe(status.UNAVAILABLE);
  });

  it("maps gRPC statuses back to codes, INTERNAL for unknown ones", () => {
    expect(codeFromGrpcStatus(status.RESOURCE_EXHAUSTED)).toBe("OVERLOADED");
    expect(codeFromGrpcStatus(status.INVALID_ARGUMENT)).toBe("INVALID_REQUEST");
    expect(codeFromGrpcStatus(status.DATA_LOSS)).toBe("INTERNAL");
  });

  it("maps a status that several codes share to the general code", () => {
    expect(codeFromGrpcStatus(status.UNAVAILABLE)).toBe("UNAVAILABLE");
    expect(codeFromGrpcStatus(status.NOT_FOUND)).toBe("NOT_FOUND");
    expect(codeFromGrpcStatus(status.INVALID_ARGUMENT)).toBe("INVALID_REQUEST");
  });
});

describe("generated messages", () => {
  it("round-trip a step delta through the wire format", () => {
    const step = StepRequest.fromPartial({
      stepId: 7,
      reset: true,
      removedSeqIds: [3],
      sequences: [{ seqId: 2 ** 40, tokenIds: [1, 2], newBlockIds: [5], doSample: true }],
      blockCopies: [1, 2],
    });
    const decoded = StepRequest.decode(StepRequest.encode(step).finish());
    expect(decoded).toEqual(step);
  });
});
