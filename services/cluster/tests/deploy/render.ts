import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { helmBinary, REPO_ROOT } from "@kiln/test-support";
import { parseAllDocuments, parse as parseYaml } from "yaml";

export const CHART_DIR = join(REPO_ROOT, "helm/kiln");
export const NAMESPACE = "kiln-ci";

/** A rendered Kubernetes object (loosely typed: the tests walk it). */
export interface K8sObject {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: { readonly name: string; readonly labels?: Record<string, string> };
  // biome-ignore lint/suspicious/noExplicitAny: rendered YAML is walked field by field.
  readonly spec?: any;
  readonly data?: Record<string, string>;
}

/** "" (the defaults) and every chart-testing values file, relative to the chart. */
export const VALUES_FILES: readonly string[] = [
  "",
  ...readdirSync(join(CHART_DIR, "ci"))
    .filter((f) => f.endsWith(".yaml"))
    .map((f) => `ci/${f}`),
];

function valuesArgs(valuesFile: string): string[] {
  return valuesFile ? ["-f", join(CHART_DIR, valuesFile)] : [];
}

/** `helm <args>` with the unpacked binary; throws with helm's output when it exits non-zero. */
export function helm(args: readonly string[]): string {
  try {
    return execFileSync(helmBinary(), args, { encoding: "utf8", stdio: "pipe" });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`helm ${args.join(" ")} failed:\n${e.stdout ?? ""}${e.stderr ?? e.message}`);
  }
}

export function lint(valuesFile: string): string {
  return helm(["lint", "--strict", CHART_DIR, "--namespace", NAMESPACE, ...valuesArgs(valuesFile)]);
}

/** The objects `helm template` renders for a values file (or throws with helm's error). */
export function render(valuesFile: string, extraArgs: readonly string[] = []): K8sObject[] {
  const text = helm([
    "template",
    "kiln",
    CHART_DIR,
    "--namespace",
    NAMESPACE,
    ...valuesArgs(valuesFile),
    ...extraArgs,
  ]);
  return parseAllDocuments(text)
    .map((doc) => doc.toJS() as K8sObject | null)
    .filter((o): o is K8sObject => o !== null);
}

/** The chart's values with a values file merged over them (maps merged, lists replaced). */
export function mergedValues(valuesFile: string): Record<string, unknown> {
  const defaults = parseYaml(helm(["show", "values", CHART_DIR])) as Record<string, unknown>;
  if (!valuesFile) return defaults;
  const over = parseYaml(readFileSync(join(CHART_DIR, valuesFile), "utf8")) as Record<
    string,
    unknown
  >;
  return deepMerge(defaults, over);
}

function deepMerge(
  a: Record<string, unknown>,
  b: Record<string, unknown>,
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const prev = out[k];
    const isMap = (x: unknown) => typeof x === "object" && x !== null && !Array.isArray(x);
    out[k] =
      isMap(prev) && isMap(v)
        ? deepMerge(prev as Record<string, unknown>, v as Record<string, unknown>)
        : v;
  }
  return out;
}

/** The value at a dotted path ("model.pvc.claimName"), or undefined. */
export function valueAt(values: Record<string, unknown>, path: string): unknown {
  let at: unknown = values;
  for (const key of path.split(".")) {
    if (typeof at !== "object" || at === null) return undefined;
    at = (at as Record<string, unknown>)[key];
  }
  return at;
}
