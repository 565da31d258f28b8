/**
 * The images cannot be built here (no base image can be pulled), so this checks what can be:
 * every COPY source exists in the build context and is not excluded by .dockerignore, every
 * file copied out of the build stage exists after `npm run build`, the final stages run as a
 * non-root user under tini, and the entry point maps each service (and a worker's pod ordinal)
 * to the right compiled file and tensor-parallel rank.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "@kiln/test-support";
import { describe, expect, it } from "vitest";
import { render } from "./render";

const DOCKERFILE = join(REPO_ROOT, "deploy/docker/Dockerfile");
const ENTRYPOINT = join(REPO_ROOT, "deploy/docker/entrypoint.sh");
const SERVICES = ["gateway", "router", "worker", "cluster"] as const;

interface Stage {
  readonly name: string;
  readonly lines: string[];
}

/** The Dockerfile's instructions (continuations joined) grouped by stage. */
function stages(): Stage[] {
  const text = readFileSync(DOCKERFILE, "utf8").replace(/\\\n/g, " ");
  const out: Stage[] = [];
  for (const line of text.split("\n").map((l) => l.trim())) {
    if (line === "" || line.startsWith("#")) continue;
    const from = /^FROM\s+\S+(?:\s+AS\s+(\S+))?/i.exec(line);
    if (from) out.push({ name: from[1] ?? `stage-${out.length}`, lines: [] });
    else if (out.length > 0) out.at(-1)!.lines.push(line);
  }
  return out;
}

/** COPY instructions: sources, destination and the stage copied from (null: the context). */
function copies() {
  return stages().flatMap((stage) =>
    stage.lines
      .filter((l) => /^COPY\s/i.test(l))
      .map((l) => {
        const words = l.split(/\s+/).slice(1);
        const from = words.find((w) => w.startsWith("--from="))?.slice("--from=".length) ?? null;
        const paths = words.filter((w) => !w.startsWith("--"));
        return { stage: stage.name, from, sources: paths.slice(0, -1) };
      }),
  );
}

/** .dockerignore patterns as regular expressions over context-relative paths. */
function ignored(): RegExp[] {
  return readFileSync(join(REPO_ROOT, ".dockerignore"), "utf8")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"))
    .map((p) => {
      const body = p
        .replace(/[.+^${}()|[\]]/g, "\\$&")
        .replace(/\*\*\//g, "(?:.*/)?")
        .replace(/\*/g, "[^/]*");
      return new RegExp(`^${body}(?:/.*)?$`);
    });
}

describe("deploy/docker", () => {
  it("copies only sources that exist in the build context and are not ignored", () => {
    const patterns = ignored();
    const fromContext = copies().filter((c) => c.from === null);
    expect(fromContext.length).toBeGreaterThan(5);
    for (const { sources } of fromContext) {
      for (const src of sources) {
        const rel = src.replace(/\/$/, "");
        expect(existsSync(join(REPO_ROOT, rel)), `COPY ${src}`).toBe(true);
        expect(patterns.filter((re) => re.test(rel)).map(String), `COPY ${src}`).toEqual([]);
      }
    }
  });

  it("copies out of the build stage only files `npm run build` produced", () => {
    const names = new Set(stages().map((s) => s.name));
    for (const { from, sources } of copies().filter((c) => c.from !== null)) {
      expect(names.has(from!), `stage ${from}`).toBe(true);
      if (from !== "build") continue;
      for (const src of sources) {
        const rel = src.replace(/^\/src\//, "").replace(/\/$/, "");
        expect(existsSync(join(REPO_ROOT, rel)), `COPY --from=build ${src}`).toBe(true);
      }
    }
    for (const name of SERVICES) {
      expect(
        copies().some((c) => c.sources.includes(`/src/services/${name}/dist/`)),
        `${name} dist copied`,
      ).toBe(true);
    }
  });

  it("has the runtime and both worker variants, non-root under tini", () => {
    const byName = new Map(stages().map((s) => [s.name, s]));
    for (const name of ["runtime", "worker-cpu", "worker-gpu"]) {
      const stage = byName.get(name);
      expect(stage, name).toBeDefined();
    }
    const lastUser = (s: Stage) => s.lines.filter((l) => /^USER\s/i.test(l)).at(-1);
    for (const name of ["runtime", "worker-cpu", "worker-gpu"]) {
      expect(lastUser(byName.get(name)!), name).toBe("USER 10001:10001");
    }
    expect(byName.get("runtime")!.lines).toContain(
      'ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/kiln"]',
    );
    expect(byName.get("worker-cpu")!.lines.join("\n")).toMatch(/libdnnl2/);
    expect(byName.get("worker-gpu")!.lines.join("\n")).toMatch(/libvulkan1/);
    expect(byName.get("worker-gpu")!.lines.join("\n")).toMatch(/icd\.d/);
  });

  it("names worker images after the Dockerfile's worker stages", () => {
    const names = new Set(stages().map((s) => s.name));
    for (const backend of ["cpu", "webgpu"]) {
      const worker = render("", ["--set", `worker.backend=${backend}`]).find(
        (o) => o.kind === "StatefulSet" && o.metadata.name === "kiln-worker",
      )!;
      const image: string = worker.spec.template.spec.containers[0].image;
      const stage = image.slice(image.lastIndexOf(":") + 1).replace(/^[^-]+-/, "");
      expect(names.has(stage), image).toBe(true);
    }
  });

  it("maps each service to its compiled entry point and a worker's ordinal to its rank", () => {
    const run = (args: string[], env: Record<string, string> = {}) =>
      execFileSync("sh", [ENTRYPOINT, ...args], {
        encoding: "utf8",
        env: {
          PATH: process.env.PATH,
          KILN_APP_DIR: REPO_ROOT,
          KILN_ENTRYPOINT_DRY_RUN: "1",
          ...env,
        },
      }).trim();
    for (const name of SERVICES) {
      const command = run([name, "--port", "1"]);
      const file = command.split(" ")[1]!;
      expect(file).toBe(join(REPO_ROOT, "services", name, "dist/main.js"));
      expect(existsSync(file), `${file} (run npm run build)`).toBe(true);
      expect(command).toContain("--port 1");
    }
    const worker = (pod: string, tp: string) =>
      run(["worker"], { POD_NAME: pod, KILN_TENSOR_PARALLEL_SIZE: tp });
    expect(worker("kiln-worker-3", "2")).toMatch(/KILN_TP_RANK=1 KILN_REPLICA_ID=replica-1$/);
    expect(worker("kiln-worker-4", "2")).toMatch(/KILN_TP_RANK=0 KILN_REPLICA_ID=replica-2$/);
    expect(worker("kiln-worker-2", "1")).toMatch(/KILN_TP_RANK=0 KILN_REPLICA_ID=replica-2$/);
    expect(() => run(["nonsense"])).toThrow();
  });
});
