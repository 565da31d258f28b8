/**
 * Entry point of the CPU backend's thread (spawned by `createCpuBackend`): loads the model into
 * a CpuModelRunner, then runs each step it is sent and replies. Runs nothing on import when
 * not inside a worker thread.
 */
import { isMainThread, parentPort, workerData } from "node:worker_threads";
import { isGroupLost } from "../collectives/collective";
import { loadTensorParallelRank, runFollowerLoop, type StepLeader } from "../collectives/tp-thread";
import { runDecodeSteps } from "../decode-steps";
import { LoraHostCache } from "./lora-cache";
import { type CpuModelRunner, loadCpuModelRunner } from "./model-runner";
import {
  type CpuWorkerInit,
  type CpuWorkerMessage,
  errorMessage,
  type StepRequestMessage,
} from "./worker-protocol";

async function serve(init: CpuWorkerInit): Promise<void> {
  const port = parentPort!;
  const post = (msg: CpuWorkerMessage, transfer: ArrayBuffer[] = []) =>
    port.postMessage(msg, transfer);
  let runner: CpuModelRunner;
  let leader: StepLeader | null = null;
  let isRestartOnGroupLoss = false;
  try {
    const opts = {
      numBlocks: init.numBlocks,
      blockSize: init.blockSize,
      maxLoras: init.maxLoras,
      weightDtype: init.weightDtype,
      activationDtype: init.activationDtype,
      kvCacheDtype: init.kvCacheDtype,
      ...(init.numThreads === null ? {} : { numThreads: init.numThreads }),
      ...(init.sampling === null ? {} : { sampling: init.sampling }),
    };
    if (init.tensorParallel !== null) {
      const rank = await loadTensorParallelRank(init.modelDir, init.tensorParallel, opts);
      if (rank.leader === null) {
        post({ type: "ready", info: rank.runner.info });
        await runFollowerLoop(rank, (line) => process.stderr.write(`${line}\n`));
        return;
      }
      runner = rank.runner;
      leader = rank.leader;
      isRestartOnGroupLoss = rank.isRestartOnFailure;
    } else {
      runner = await loadCpuModelRunner(init.modelDir, opts);
    }
  } catch (err) {
    post({ type: "init-error", message: errorMessage(err) });
    return;
  }
  const loraCache = new LoraHostCache(runner.config, init.maxCpuLoras, init.maxLoraRank);
  port.on("message", async (msg: StepRequestMessage) => {
    try {
      const loads = msg.input.loraLoads;
      if (loads !== undefined && loads.length > 0) await loraCache.applyLoads(loads, runner.lora);
      // Rank 0 of a tensor-parallel group forwards the step to the other ranks first.
      leader?.sendStep(msg.input);
      let output: ReturnType<CpuModelRunner["step"]>;
      try {
        output = runner.step(msg.input);
        // Multi-step decode (ADR 0028): the further steps run here, forwarded like the first.
        output = runDecodeSteps(msg.input, output, runner.info.blockSize, (next) => {
          leader?.sendStep(next);
          return runner.step(next);
        });
      } catch (err) {
        leader?.markBroken();
        throw err;
      }
      // The logits are a fresh array per step: hand their memory over instead of copying.
      const transfer = output.logits ? [output.logits.buffer as ArrayBuffer] : [];
      post({ type: "step-result", id: msg.id, output }, transfer);
    } catch (err) {
      post({ type: "step-error", id: msg.id, message: errorMessage(err) });
      // A broken TCP ring cannot be re-formed: end the thread (the backend reports itself dead).
      if (isRestartOnGroupLoss && isGroupLost(err)) process.exit(1);
    }
  });
  post({ type: "ready", info: runner.info });
}

if (!isMainThread && parentPort !== null) await serve(workerData as CpuWorkerInit);
