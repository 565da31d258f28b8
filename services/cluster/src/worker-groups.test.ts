import { describe, expect, it } from "vitest";
import { parseSupervisorOptions } from "./supervisor-options";
import { workerProcessSpecs } from "./worker-groups";

describe("workerProcessSpecs", () => {
  it("keeps one plain worker by default", () => {
    expect(workerProcessSpecs({ tensorParallelSize: 1, dataParallelSize: 1 }, "c")).toEqual([
      { name: "worker", replicaId: "replica-0", rank: 0, args: [] },
    ]);
  });

  it("lists T ranks per group, one replica per group, one shared-memory group each", () => {
    const specs = workerProcessSpecs({ tensorParallelSize: 2, dataParallelSize: 2 }, "c");
    expect(specs.map((s) => s.name)).toEqual([
      "worker-0-0",
      "worker-0-1",
      "worker-1-0",
      "worker-1-1",
    ]);
    expect(specs[3]!.args).toEqual([
      ...["--replica-id", "replica-1", "--tensor-parallel-size", "2"],
      ...["--tp-rank", "1", "--tp-group", "c-replica-1"],
    ]);
  });

  it("runs D plain replicas without tensor parallelism", () => {
    const specs = workerProcessSpecs({ tensorParallelSize: 1, dataParallelSize: 2 }, "c");
    expect(specs.map((s) => [s.name, ...s.args])).toEqual([
      ["worker-0", "--replica-id", "replica-0"],
      ["worker-1", "--replica-id", "replica-1"],
    ]);
  });
});

describe("supervisor options", () => {
  it("reads T and D from flags over the environment", () => {
    const env = { KILN_TENSOR_PARALLEL_SIZE: "4", KILN_DATA_PARALLEL_SIZE: "3" };
    expect(parseSupervisorOptions([], env)).toMatchObject({
      tensorParallelSize: 4,
      dataParallelSize: 3,
    });
    expect(parseSupervisorOptions(["--tensor-parallel-size", "2"], env).tensorParallelSize).toBe(2);
    expect(() => parseSupervisorOptions(["--data-parallel-size", "0"], {})).toThrow(
      /--data-parallel-size/,
    );
  });
});
