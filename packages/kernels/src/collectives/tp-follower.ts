import type { StepInput } from "../backend";
import { isGroupLost } from "./collective";
import type { ShmGroup } from "./shm-group";
import { decodeStep } from "./step-codec";

/** How long one idle wait for a step blocks before it returns to the event loop. */
const IDLE_WAIT_MS = 100;

/**
 * A rank > 0's side of the step protocol: joins each new epoch, receives the steps rank 0
 * forwards (checking their numbers), and runs them. Ranks > 0 keep no sequence state.
 */
export class TensorParallelFollower {
  private expectedStepNo = 1;
  private epoch = 0;
  private buffer = new Uint8Array(0);

  constructor(private readonly group: ShmGroup) {}

  /** Whether this rank takes part in a formed epoch (else there is nothing to wait on yet). */
  get isInGroup(): boolean {
    return this.group.join() !== 0;
  }

  /**
   * Waits up to about IDLE_WAIT_MS for the next step and returns it, or null (nothing yet, or
   * the group is not formed: call again). Throws GroupLostError when the group broke mid-step.
   */
  tryReceiveStep(): StepInput | null {
    const epoch = this.group.join();
    if (epoch === 0) return null; // the caller sleeps: see isInGroup
    if (epoch !== this.epoch) {
      this.epoch = epoch;
      this.expectedStepNo = 1;
    }
    if (this.buffer.length < this.group.slotBytes)
      this.buffer = new Uint8Array(this.group.slotBytes);
    const first = this.group.broadcast(this.buffer, 0, IDLE_WAIT_MS);
    if (first < 0) return null;
    const total = new DataView(this.buffer.buffer).getUint32(0, true);
    const msg = new Uint8Array(total + 4);
    msg.set(this.buffer.subarray(0, first));
    for (let got = first; got < msg.length; ) {
      const n = this.group.broadcast(this.buffer, 0, this.group.timeoutMs);
      if (n < 0) throw new Error("tensor-parallel step: rank 0 stopped mid-message");
      msg.set(this.buffer.subarray(0, n), got);
      got += n;
    }
    const { stepNo, input } = decodeStep(msg.subarray(4));
    if (stepNo !== this.expectedStepNo) {
      throw new Error(`tensor-parallel step ${stepNo} is stale (expected ${this.expectedStepNo})`);
    }
    this.expectedStepNo++;
    return input;
  }
}

export { isGroupLost };
