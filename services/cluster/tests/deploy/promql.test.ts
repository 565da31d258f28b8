/**
 * Every PromQL expression the chart ships parses: the PrometheusRule's alert rules (promtool
 * check rules on the rendered spec), and the Grafana dashboards' panel queries and the KEDA
 * trigger query (each checked as a recording rule, Grafana's variables replaced by values).
 * promtool comes with Debian's `prometheus` package; under CI=true a missing promtool fails.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hasBinary, requireAvailable } from "@kiln/test-support";
import { afterAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { type K8sObject, render } from "./render";

const HAS_PROMTOOL = requireAvailable(
  "promtool",
  hasBinary("promtool", ["--version"]),
  "apt-get install prometheus",
);
const FULL_VALUES = "ci/keda-servicemonitor-values.yaml";
const dir = mkdtempSync(join(tmpdir(), "kiln-promql-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** `promtool check rules` on `groups`; returns its output, throws with it on failure. */
function checkRules(name: string, groups: unknown): string {
  const file = join(dir, `${name}.yml`);
  writeFileSync(file, stringify({ groups }));
  try {
    return execFileSync("promtool", ["check", "rules", file], { encoding: "utf8", stdio: "pipe" });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    throw new Error(`promtool check rules ${name}:\n${e.stdout ?? ""}${e.stderr ?? ""}`);
  }
}

/** A panel query as plain PromQL: Grafana's variables replaced by what they could expand to. */
function asPromql(expr: string): string {
  return expr
    .replaceAll("$__rate_interval", "5m")
    .replaceAll("$__interval", "1m")
    .replace(/\$\{?(\w+)\}?/g, ".*");
}

/** Every `expr` of every panel (nested rows included) of the rendered dashboard ConfigMaps. */
function dashboardExprs(objects: readonly K8sObject[]): string[] {
  const exprs: string[] = [];
  const walk = (node: unknown): void => {
    if (Array.isArray(node)) node.forEach(walk);
    else if (node && typeof node === "object") {
      for (const [k, v] of Object.entries(node)) {
        if (k === "expr" && typeof v === "string") exprs.push(v);
        else walk(v);
      }
    }
  };
  for (const cm of objects.filter((o) => o.kind === "ConfigMap" && o.data)) {
    for (const json of Object.values(cm.data!)) walk(JSON.parse(json).panels);
  }
  return exprs;
}

describe.skipIf(!HAS_PROMTOOL)("PromQL in the chart", () => {
  const objects = render(FULL_VALUES);

  it("passes promtool check rules on the rendered PrometheusRule", () => {
    const rule = objects.find((o) => o.kind === "PrometheusRule")!;
    const numRules = rule.spec.groups.flatMap((g: { rules: unknown[] }) => g.rules).length;
    expect(numRules).toBeGreaterThan(0);
    expect(checkRules("prometheusrule", rule.spec.groups)).toContain(
      `SUCCESS: ${numRules} rules found`,
    );
  });

  it("parses every dashboard query and the KEDA trigger query", () => {
    const exprs = dashboardExprs(objects);
    expect(exprs.length).toBeGreaterThan(20);
    const scaled = objects.find((o) => o.kind === "ScaledObject")!;
    const kedaQuery: string = scaled.spec.triggers[0].metadata.query;
    expect(kedaQuery).toContain("kiln_num_requests_waiting");
    const rules = [...exprs, kedaQuery].map((expr, i) => ({
      record: `kiln:check_${i}`,
      expr: asPromql(expr),
    }));
    expect(checkRules("queries", [{ name: "queries", rules }])).toContain(
      `SUCCESS: ${rules.length} rules found`,
    );
  });

  it("fails on a broken expression (the check is live)", () => {
    const broken = [
      { name: "broken", rules: [{ record: "kiln:broken", expr: "sum(rate(kiln_x[5m]" }] },
    ];
    expect(() => checkRules("broken", broken)).toThrow(/promtool check rules broken/);
  });
});
