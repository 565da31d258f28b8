// One rank of a tensor-parallel group in its own process, for bench:tp (main.ts).
//   tsx rank.ts <modelDir|-> <groupId> <rank> <size> <mode> [numBlocks]
// mode "backend": load the shard (a follower runs its loop; rank 0 is not used here), print
//   {"event":"ready","rss":B} 3 s later (KILN_BENCH_RSS_DELAY_MS: V8 releases the freed, unpacked
//   shard's backing stores in the background) and stay until killed.
// mode "allreduce": open the group alone (no model), all-reduce `n` floats `iters` times after
//   forming, print {"event":"allreduce","usPerOp":X}.
import { createCpuBackend, ShmGroup } from "@kiln/kernels";

const [modelDir, groupId, rankText, sizeText, mode, numBlocksText] = process.argv.slice(2);
const rank = Number(rankText);
const size = Number(sizeText);
const tp = { groupId: groupId!, rank, size, timeoutMs: 30_000 };

function emit(line: object): void {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

if (mode === "backend") {
  await createCpuBackend({
    modelDir: modelDir!,
    numBlocks: Number(numBlocksText ?? 64),
    blockSize: 16,
    numThreads: 1,
    tensorParallel: tp,
  });
  await new Promise((r) => setTimeout(r, Number(process.env.KILN_BENCH_RSS_DELAY_MS ?? 3000)));
  emit({ event: "ready", rss: process.memoryUsage().rss });
  setInterval(() => {}, 1 << 30);
} else {
  const n = Number(numBlocksText ?? 768);
  const iters = 2000;
  let group = ShmGroup.tryOpen(tp);
  while (group === null) {
    await new Promise((r) => setTimeout(r, 20));
    group = ShmGroup.tryOpen(tp);
  }
  if (rank === 0) {
    while (!group.form(1000)) {}
  } else {
    while (group.join() === 0) await new Promise((r) => setTimeout(r, 5));
  }
  const buf = new Float32Array(n).fill(1);
  for (let i = 0; i < 100; i++) group.allReduce(buf, n); // warm up
  const start = performance.now();
  for (let i = 0; i < iters; i++) group.allReduce(buf, n);
  const usPerOp = ((performance.now() - start) * 1000) / iters;
  emit({ event: "allreduce", usPerOp });
  group.close(rank === 0);
}
