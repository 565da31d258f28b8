import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { STORIES_DIR } from "@kiln/test-support";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { type FakeHub, startFakeHub } from "../tests/fake-hub";
import { f32Tensor, makeTmpDir, writeSafetensors } from "../tests/helpers";
import { ModelError } from "./errors";
import { downloadFromHub, type HubProgress, resolveModelDir } from "./hub";
import { loadModel, loadWeights } from "./weights";

const REPO = "kiln-test/stories260K";
const SHA = "0123456789abcdef0123456789abcdef01234567";
const NEEDED = ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json"];
const NEEDED_ALL = [...NEEDED, "tokenizer_config.json"].sort();

let hub: FakeHub;
let cacheDir = "";
let cleanup: () => Promise<void> = async () => {};

beforeEach(async () => {
  ({ dir: cacheDir, cleanup } = await makeTmpDir());
  vi.stubEnv("HF_TOKEN", undefined);
  vi.stubEnv("HUGGING_FACE_HUB_TOKEN", undefined);
  hub = await startFakeHub({
    repoId: REPO,
    dir: STORIES_DIR,
    sha: SHA,
    token: "secret",
    extraSiblings: ["README.md", "original/consolidated.safetensors"],
  });
});
afterEach(async () => {
  vi.unstubAllEnvs();
  await hub.close();
  await cleanup();
});

const options = () => ({ endpoint: hub.endpoint, cacheDir, token: "secret" });
const fileRequests = () => hub.log.filter((l) => l.path.startsWith("/cdn/"));

describe("downloadFromHub", () => {
  it("downloads only what a model needs into a snapshot directory", async () => {
    const dir = await downloadFromHub(REPO, options());
    expect(dir).toBe(join(cacheDir, "models--kiln-test--stories260K", "snapshots", SHA));
    expect((await readdir(dir)).sort()).toEqual(NEEDED_ALL);
    for (const f of NEEDED) {
      expect((await readFile(join(dir, f))).equals(await readFile(join(STORIES_DIR, f)))).toBe(
        true,
      );
    }
    expect(hub.log.every((l) => l.auth === "Bearer secret")).toBe(true);
    const { config } = await loadModel(dir);
    expect(config.numLayers).toBe(5);
  });

  it("serves a second call from the cache", async () => {
    await downloadFromHub(REPO, options());
    const numFileRequests = fileRequests().length;
    await downloadFromHub(REPO, options());
    expect(fileRequests().length).toBe(numFileRequests);
  });

  it("resumes an interrupted transfer with Range and reports progress", async () => {
    hub.interruptOnce.add("model.safetensors");
    const progress: HubProgress[] = [];
    const dir = await downloadFromHub(REPO, { ...options(), onProgress: (p) => progress.push(p) });
    const total = (await readFile(join(STORIES_DIR, "model.safetensors"))).length;
    const weightRequests = fileRequests().filter((l) => l.path === "/cdn/model.safetensors");
    expect(weightRequests.length).toBe(2);
    expect(weightRequests[0]!.range).toBeUndefined();
    expect(weightRequests[1]!.range).toMatch(/^bytes=\d+-$/);
    expect(Number(weightRequests[1]!.range!.slice(6, -1))).toBeGreaterThan(0);
    expect(
      (await readFile(join(dir, "model.safetensors"))).equals(
        await readFile(join(STORIES_DIR, "model.safetensors")),
      ),
    ).toBe(true);
    const weightProgress = progress.filter((p) => p.file === "model.safetensors");
    expect(weightProgress.at(-1)).toEqual({
      file: "model.safetensors",
      bytes: total,
      totalBytes: total,
    });
    expect(weightProgress.every((p) => p.totalBytes === total && p.bytes <= total)).toBe(true);
  });

  it("resumes a partial file left by an earlier process, and restarts on a 200", async () => {
    const snapshot = join(cacheDir, "models--kiln-test--stories260K", "snapshots", SHA);
    const source = await readFile(join(STORIES_DIR, "model.safetensors"));
    await mkdir(snapshot, { recursive: true });
    await writeFile(join(snapshot, "model.safetensors.incomplete"), source.subarray(0, 1000));
    await downloadFromHub(REPO, options());
    const req = fileRequests().find((l) => l.path === "/cdn/model.safetensors");
    expect(req?.range).toBe("bytes=1000-");
    expect((await readFile(join(snapshot, "model.safetensors"))).equals(source)).toBe(true);

    await cleanup();
    ({ dir: cacheDir, cleanup } = await makeTmpDir());
    const again = join(cacheDir, "models--kiln-test--stories260K", "snapshots", SHA);
    await mkdir(again, { recursive: true });
    await writeFile(join(again, "model.safetensors.incomplete"), Buffer.alloc(1000, 7));
    hub.ignoreRange = true;
    await downloadFromHub(REPO, options());
    expect((await readFile(join(again, "model.safetensors"))).equals(source)).toBe(true);
  });

  it("asks for a token on 401, naming HF_TOKEN", async () => {
    const err = await downloadFromHub(REPO, { endpoint: hub.endpoint, cacheDir }).catch((e) => e);
    expect(err).toBeInstanceOf(ModelError);
    expect(err).toMatchObject({ code: "UNAUTHORIZED", message: expect.stringMatching(/HF_TOKEN/) });
  });

  it("takes the token and endpoint from the environment", async () => {
    vi.stubEnv("HF_TOKEN", "secret");
    vi.stubEnv("HF_ENDPOINT", hub.endpoint);
    await expect(downloadFromHub(REPO, { cacheDir })).resolves.toContain(SHA);
  });

  it("names the repository on 404", async () => {
    const err = await downloadFromHub("kiln-test/nope", options()).catch((e) => e);
    expect(err).toMatchObject({
      code: "NOT_FOUND",
      message: expect.stringMatching(/kiln-test\/nope/),
    });
  });

  it("rejects repository ids that are paths", async () => {
    await expect(downloadFromHub("../etc", options())).rejects.toMatchObject({ code: "NOT_FOUND" });
  });
});

describe("sharded repositories", () => {
  it("downloads the index and the shards it names, nothing else", async () => {
    const { dir: repoDir, cleanup: cleanupRepo } = await makeTmpDir();
    await writeFile(join(repoDir, "config.json"), "{}");
    await writeSafetensors(join(repoDir, "a.safetensors"), [f32Tensor("a", [1], [1])]);
    await writeSafetensors(join(repoDir, "b.safetensors"), [f32Tensor("b", [1], [2])]);
    // Mistral repos ship a consolidated copy beside the shards; it must not be fetched.
    await writeSafetensors(join(repoDir, "consolidated.safetensors"), [f32Tensor("a", [1], [1])]);
    const weightMap = { a: "a.safetensors", b: "b.safetensors" };
    const indexJson = JSON.stringify({ weight_map: weightMap });
    await writeFile(join(repoDir, "model.safetensors.index.json"), indexJson);
    const sharded = await startFakeHub({ repoId: "kiln-test/sharded", dir: repoDir, sha: "abc" });
    try {
      const dir = await downloadFromHub("kiln-test/sharded", {
        endpoint: sharded.endpoint,
        cacheDir,
      });
      expect((await readdir(dir)).sort()).toEqual([
        "a.safetensors",
        "b.safetensors",
        "config.json",
        "model.safetensors.index.json",
      ]);
      expect([...(await loadWeights(dir)).keys()].sort()).toEqual(["a", "b"]);
    } finally {
      await sharded.close();
      await cleanupRepo();
    }
  });
});

describe("resolveModelDir", () => {
  it("uses a local directory as-is and downloads a repo id", async () => {
    expect(await resolveModelDir(STORIES_DIR)).toBe(STORIES_DIR);
    await expect(resolveModelDir("./does/not/exist")).rejects.toMatchObject({ code: "NOT_FOUND" });
    expect(await resolveModelDir(REPO, options())).toContain(SHA);
  });
});
