import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { tryResolveModelSpec } from "../src/model-spec";

const root = mkdtempSync(join(tmpdir(), "kiln-cluster-"));
const missing = join(root, "missing");

describe("tryResolveModelSpec", () => {
  it("defaults to the test model when it exists, else null", () => {
    expect(tryResolveModelSpec(undefined, "/", root)).toEqual({
      source: { dir: root },
      servedName: root.split("/").at(-1),
    });
    expect(tryResolveModelSpec("", "/", missing)).toBeNull();
  });

  it("reads a relative directory from the user's cwd", () => {
    const [parent, name] = [join(root, ".."), root.split("/").at(-1)!];
    expect(tryResolveModelSpec(name, parent, missing)).toEqual({
      source: { dir: root },
      servedName: name,
    });
  });

  it("takes owner/name that is not a local directory as a Hub repo id", () => {
    expect(tryResolveModelSpec("TinyLlama/TinyLlama-1.1B", root, missing)).toEqual({
      source: { repoId: "TinyLlama/TinyLlama-1.1B" },
      servedName: "TinyLlama/TinyLlama-1.1B",
    });
  });

  it("rejects a path that does not exist and is no repo id", () => {
    expect(tryResolveModelSpec("./nope", root, missing)).toBeNull();
    expect(tryResolveModelSpec("/a/b/c", root, missing)).toBeNull();
  });
});
