import type { LoraSlotLoad, StepInput } from "@kiln/kernels";
import type { StepRequest } from "@kiln/proto";
import { StepDeltaError } from "./sequence-table";

/** The LoRA part of a StepInput: per-sequence slots (-1 = base) and slot loads. */
export interface LoraStepPart {
  readonly loraSlots?: Int32Array;
  readonly loraLoads?: readonly LoraSlotLoad[];
}

/**
 * Reads the LoRA slots of a wire step (ScheduledSequence.lora_slot is 1-based, 0 = base) and its
 * slot loads, checking every slot against `maxLoras` before anything is applied.
 */
export function loraFromWire(req: StepRequest, maxLoras: number): LoraStepPart {
  const check = (slot: number, what: string) => {
    if (!Number.isInteger(slot) || slot < 0 || slot >= maxLoras) {
      throw new StepDeltaError(`${what}: LoRA slot ${slot} is outside 0..${maxLoras - 1}`);
    }
  };
  const loads = req.loraLoads.map((load) => {
    check(load.slot, `load of adapter ${load.name}`);
    if (load.path === "") throw new StepDeltaError(`load of adapter ${load.name}: no path`);
    return { slot: load.slot, path: load.path };
  });
  let anyAdapted = false;
  const slots = req.sequences.map((seq) => {
    if (seq.loraSlot === 0) return -1;
    anyAdapted = true;
    check(seq.loraSlot - 1, `sequence ${seq.seqId}`);
    return seq.loraSlot - 1;
  });
  return {
    ...(anyAdapted ? { loraSlots: Int32Array.from(slots) } : {}),
    ...(loads.length > 0 ? { loraLoads: loads } : {}),
  };
}

/** `input` with the LoRA part of `req` (see loraFromWire). */
export function withLora(input: StepInput, lora: LoraStepPart): StepInput {
  return lora.loraSlots === undefined && lora.loraLoads === undefined
    ? input
    : { ...input, ...lora };
}
