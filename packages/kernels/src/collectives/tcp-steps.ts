import type { StepInput } from "../backend";
import { decodeStep, encodeStep } from "./step-codec";
import type { TcpRing } from "./tcp-ring";

const IDLE_WAIT_MS = 100;

/**
 * The step protocol over a TCP ring (ADR 0018): rank 0 numbers and forwards each step around
 * the ring; the others check the number (1, 2, … for the life of the ring) and run it. A ring
 * has no epochs: any failure closes it for good, the rank's thread exits, and recovery is a
 * restart of the ranks (the supervisor or Kubernetes), which connect a fresh ring.
 */
export class TcpStepLeader {
  private stepNo = 0;

  constructor(private readonly ring: TcpRing) {}

  sendStep(input: StepInput): void {
    this.stepNo++;
    this.ring.broadcast(encodeStep(this.stepNo, input), IDLE_WAIT_MS);
  }

  markBroken(): void {}
}

export class TcpStepFollower {
  private expectedStepNo = 1;

  constructor(private readonly ring: TcpRing) {}

  readonly isInGroup = true;

  /** The next step, or null when none started within ~IDLE_WAIT_MS. Throws on a broken ring. */
  tryReceiveStep(): StepInput | null {
    const bytes = this.ring.broadcast(null, IDLE_WAIT_MS);
    if (bytes === null) return null;
    const { stepNo, input } = decodeStep(bytes);
    if (stepNo !== this.expectedStepNo) {
      throw new Error(`tensor-parallel step ${stepNo} is stale (expected ${this.expectedStepNo})`);
    }
    this.expectedStepNo++;
    return input;
  }
}
