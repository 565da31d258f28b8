import { credentials, Metadata } from "@grpc/grpc-js";
import {
  type GrammarSpec,
  type ScheduledSequence,
  StepRequest,
  type StepResponse,
  WorkerClient,
} from "@kiln/proto";
import { STORIES_DIR } from "@kiln/test-support";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ServiceProcess, startService } from "../../router/tests/processes";

/** About a second to compile on stories260K's 512 tokens (half a second per 400 fields). */
function slowSchema(numFields: number): GrammarSpec {
  const properties: Record<string, unknown> = {};
  for (let i = 0; i < numFields; i++) {
    properties[`field_${i}`] = { type: "string", maxLength: 10 + (i % 7) };
  }
  const schema = { type: "object", properties, required: Object.keys(properties) };
  return { kind: "json_schema", text: JSON.stringify(schema), strict: true };
}

const LETTERS: GrammarSpec = { kind: "regex", text: "[a-z]{1,300}", strict: true };
const BLOCKS_PER_SEQ = 8; // 128 tokens at 16 per block
const MAX_DECODE_STEPS = 100;

describe("a worker compiling a grammar (PrepareGrammar)", () => {
  let worker: ServiceProcess;
  let client: WorkerClient;

  beforeAll(async () => {
    worker = await startService("worker", ["--model", STORIES_DIR, "--kv-cache-memory", "2MiB"]);
    client = new WorkerClient(`127.0.0.1:${worker.port}`, credentials.createInsecure());
  }, 60_000);

  afterAll(async () => {
    client?.close();
    await worker?.stop();
  });

  const step = (req: StepRequest) =>
    new Promise<StepResponse>((resolve, reject) =>
      client.step(req, new Metadata(), { deadline: Date.now() + 10_000 }, (err, res) =>
        err ? reject(err) : resolve(res),
      ),
    );
  const prepare = (grammar: GrammarSpec) =>
    new Promise<string>((resolve, reject) =>
      client.prepareGrammar(
        { grammar },
        new Metadata(),
        { deadline: Date.now() + 60_000 },
        (err, res) => (err ? reject(err) : resolve(res.error)),
      ),
    );

  it("keeps stepping other sequences, constrained ones included, while it compiles", async () => {
    expect(await prepare(LETTERS)).toBe("");
    const prompt = [1, 403, 261, 339];
    const scheduled = (seqId: number, firstBlock: number): Partial<ScheduledSequence> => ({
      seqId,
      tokenIds: prompt,
      newBlockIds: Array.from({ length: BLOCKS_PER_SEQ }, (_, i) => firstBlock + i),
      doSample: true,
    });
    // Sequence 1 unconstrained, sequence 2 on a grammar compiled before.
    let seqs = [scheduled(1, 0), scheduled(2, BLOCKS_PER_SEQ)];
    let res = await step(
      StepRequest.fromPartial({
        stepId: 1,
        reset: true,
        newSequences: [
          { seqId: 1, promptTokenIds: prompt },
          { seqId: 2, promptTokenIds: prompt, grammar: LETTERS },
        ],
        sequences: seqs,
      }),
    );
    expect(res.failures).toEqual([]);
    let isCompiled = false;
    const compiling = prepare(slowSchema(600)).then((error) => {
      isCompiled = true;
      return error;
    });
    let numStepsWhileCompiling = 0;
    for (let i = 1; i <= MAX_DECODE_STEPS && !isCompiled; i++) {
      seqs = seqs.map((seq) => ({
        ...seq,
        tokenIds: [res.results.find((r) => r.seqId === seq.seqId)!.token!.tokenId],
        numComputedTokens: prompt.length + i - 1,
        newBlockIds: [],
        outputIndex: i,
      }));
      res = await step(StepRequest.fromPartial({ stepId: 1 + i, sequences: seqs }));
      expect(res.failures).toEqual([]);
      expect(res.results).toHaveLength(2);
      if (!isCompiled) numStepsWhileCompiling++;
    }
    expect(await compiling).toBe("");
    // A compile on the event loop (or on the constrained sequence's grammar thread) would let
    // no step through until it ended.
    expect(numStepsWhileCompiling).toBeGreaterThanOrEqual(5);
  });

  it("answers an error naming what cannot be compiled", async () => {
    expect(await prepare({ kind: "regex", text: "(", strict: true })).toMatch(/regex/);
    expect(await prepare({ kind: "yaml", text: "", strict: true })).toMatch(/unknown grammar kind/);
  });
});
