import { describe, expect, it } from "vitest";
import { onOffOption } from "./on-off-option";

describe("onOffOption (--async-scheduling / KILN_ASYNC_SCHEDULING)", () => {
  it("falls back when unset and reads on/off, 1/0, true/false", () => {
    expect(onOffOption(undefined, true, "--async-scheduling")).toBe(true);
    expect(onOffOption(undefined, false, "--async-scheduling")).toBe(false);
    for (const on of ["on", "1", "true"]) expect(onOffOption(on, false, "--x")).toBe(true);
    for (const off of ["off", "0", "false"]) expect(onOffOption(off, true, "--x")).toBe(false);
  });

  it("rejects anything else, naming the flag", () => {
    expect(() => onOffOption("yes", true, "--async-scheduling")).toThrow(
      '--async-scheduling: expected on or off, got "yes"',
    );
  });
});
