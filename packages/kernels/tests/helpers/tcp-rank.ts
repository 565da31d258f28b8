// One rank of a TCP-ring tensor-parallel group in its own process (tests/tcp-ring.test.ts).
//   tsx tcp-rank.ts <rank> <size> <listenPort> <nextHost:port> <mode> [modelDir]
// mode "sum": all-reduces 1001 values (rank r contributes r + i/7) and prints the result.
// mode "golden": runs rank `rank` of the model's shard and greedy-decodes the golden prompts
//   (chunked, batched); rank 0's sampled tokens reach the others through the same all-reduce.
import { loadModelShard } from "@kiln/model";
import { loadGoldenCases } from "@kiln/test-support";
import type { StepInput, StepOutput } from "../../src/backend";
import { TcpRing } from "../../src/collectives/tcp-ring";
import { CpuModelRunner } from "../../src/cpu/model-runner";
import { greedyGenerate } from "./step-driver";

const [rankText, sizeText, listenPort, next, mode, modelDir] = process.argv.slice(2);
const rank = Number(rankText);
const size = Number(sizeText);
const ring = TcpRing.connect({
  rank,
  size,
  listenPort: Number(listenPort),
  next: next!,
  timeoutMs: 20_000,
});

if (mode === "sum") {
  const buf = Float32Array.from({ length: 1001 }, (_, i) => rank + i / 7);
  ring.allReduce(buf, buf.length);
  process.stdout.write(`${JSON.stringify({ values: Array.from(buf) })}\n`);
} else {
  const { plan, weights } = await loadModelShard(modelDir!, rank, size);
  const runner = new CpuModelRunner(plan.config, weights, {
    numBlocks: 64,
    blockSize: 16,
    numThreads: 1,
    collective: ring,
  });
  const stepper = {
    step: async (input: StepInput): Promise<StepOutput> => {
      const out = runner.step(input);
      // Rank 0 samples; token ids (< 2^24) survive a float sum exactly.
      const tokens = Float32Array.from(out.sampled, (s) => (s === null ? 0 : s.tokenId + 1));
      ring.allReduce(tokens, tokens.length);
      return {
        sampled: Array.from(tokens, (t) =>
          t === 0 ? null : { tokenId: t - 1, logprob: 0, topLogprobs: [] },
        ),
      };
    },
  };
  const cases = loadGoldenCases();
  const generated = await greedyGenerate(
    stepper,
    cases.map((c) => c.prompt_ids),
    {
      blockSize: 16,
      numBlocks: 64,
      maxNewTokens: cases[0]!.greedy_ids.length,
      chunkLen: 7,
      isBatched: true,
    },
  );
  process.stdout.write(`${JSON.stringify({ generated })}\n`);
}
ring.close();
