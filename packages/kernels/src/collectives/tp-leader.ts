import type { StepInput } from "../backend";
import { GroupLostError } from "./collective";
import type { ShmGroup } from "./shm-group";
import { encodeStep } from "./step-codec";

/**
 * Rank 0's side of the step protocol (ADR 0018). Before each step it makes sure every rank is
 * in the group's current epoch (re-forming it after a failure or a rank's restart), then
 * forwards the step — chunked over broadcast ops, the first 4 bytes giving the total length —
 * and numbers it: a rank that sees a step number other than the next one refuses it, so a
 * stale or replayed step is never applied. Any error marks the group for re-forming.
 */
export class TensorParallelLeader {
  private isFormed = false;
  private stepNo = 0;

  constructor(private readonly group: ShmGroup) {}

  /** Forwards `input` to every rank. Throws GroupLostError when the group is incomplete. */
  sendStep(input: StepInput): void {
    try {
      this.ensureFormed();
      this.stepNo++;
      const body = encodeStep(this.stepNo, input);
      const msg = new Uint8Array(4 + body.length);
      new DataView(msg.buffer).setUint32(0, body.length, true);
      msg.set(body, 4);
      const slot = this.group.slotBytes;
      for (let off = 0; off < msg.length; off += slot) {
        const chunk = msg.subarray(off, Math.min(msg.length, off + slot));
        this.group.broadcast(chunk, chunk.length, this.group.timeoutMs);
      }
    } catch (err) {
      this.isFormed = false;
      throw err;
    }
  }

  /** Called when a step failed after it was forwarded: the next step re-forms the group. */
  markBroken(): void {
    this.isFormed = false;
  }

  private ensureFormed(): void {
    if (this.isFormed && this.group.status().every((r) => r.isJoined && r.isAlive)) return;
    this.isFormed = false;
    if (!this.group.form(this.group.timeoutMs)) {
      const missing = this.group
        .status()
        .map((r, rank) => ({ ...r, rank }))
        .filter((r) => !r.isJoined)
        .map((r) => `${r.rank}${r.isAlive ? "" : " (no process)"}`);
      throw new GroupLostError(
        `tensor-parallel ranks ${missing.join(", ")} did not join the group`,
      );
    }
    this.isFormed = true;
    this.stepNo = 0;
  }
}
