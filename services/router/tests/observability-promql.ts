/**
 * PromQL taken from the Grafana dashboards and the alert rules, made runnable against a
 * test Prometheus: Grafana variables substituted, and alert comparisons turned into `bool`
 * comparisons so a healthy cluster still returns data for every signal.
 */

/** One query a dashboard runs, and where it came from (for failure messages). */
export interface DashboardQuery {
  readonly where: string;
  readonly expr: string;
}

interface PanelLike {
  readonly title?: string;
  readonly panels?: PanelLike[];
  readonly targets?: { readonly expr?: string }[];
}

interface DashboardLike {
  readonly title: string;
  readonly panels: PanelLike[];
  readonly templating?: { readonly list: { readonly name: string; readonly query?: unknown }[] };
}

/** Every panel target's `expr` and every query variable, rows' nested panels included. */
export function dashboardQueries(dashboard: DashboardLike): DashboardQuery[] {
  const out: DashboardQuery[] = [];
  const visit = (panels: readonly PanelLike[]) => {
    for (const panel of panels) {
      for (const target of panel.targets ?? []) {
        if (target.expr)
          out.push({ where: `${dashboard.title} / ${panel.title}`, expr: target.expr });
      }
      visit(panel.panels ?? []);
    }
  };
  visit(dashboard.panels);
  for (const variable of dashboard.templating?.list ?? []) {
    const q = variable.query as { query?: string } | string | undefined;
    const text = typeof q === "string" ? q : q?.query;
    if (text?.startsWith("label_values(")) {
      out.push({ where: `${dashboard.title} / $${variable.name}`, expr: labelValuesSeries(text) });
    }
  }
  return out;
}

/** `label_values(metric{sel}, label)` → `metric{sel}` (the series the variable reads). */
function labelValuesSeries(text: string): string {
  const inner = text.slice("label_values(".length, text.lastIndexOf(")"));
  return inner.slice(0, inner.lastIndexOf(",")).trim();
}

/** Grafana's variables as a test sees them: every model and replica, a 1-minute window. */
export function substituteVariables(expr: string): string {
  return expr
    .replaceAll("$__rate_interval", "1m")
    .replaceAll("$__interval", "15s")
    .replace(/\$\{?(model|replica)\}?/g, ".*");
}

/**
 * Inserts `bool` after every comparison operator at the top level of `expr` (outside
 * parentheses, braces, brackets and strings): `a > 0.95` → `a > bool 0.95`, which returns
 * 0/1 for every series instead of only the ones past the threshold.
 */
export function withBoolComparisons(expr: string): string {
  let out = "";
  let depth = 0;
  let quote: string | null = null;
  for (let i = 0; i < expr.length; i++) {
    const c = expr[i]!;
    if (quote) {
      out += c;
      if (c === "\\") out += expr[++i] ?? "";
      else if (c === quote) quote = null;
      continue;
    }
    if (c === '"' || c === "'" || c === "`") quote = c;
    else if ("({[".includes(c)) depth++;
    else if (")}]".includes(c)) depth--;
    const two = expr.slice(i, i + 2);
    const op = ["==", "!=", ">=", "<="].includes(two) ? two : c === ">" || c === "<" ? c : null;
    if (op && depth === 0) {
      out += `${op} bool`;
      i += op.length - 1;
      continue;
    }
    out += c;
  }
  return out;
}

/** The Kiln metric names (`kiln_…`, histogram suffixes included) that `queries` read. */
export function metricNames(queries: readonly DashboardQuery[]): string[] {
  const names = new Set<string>();
  for (const q of queries) {
    for (const m of q.expr.matchAll(/\bkiln_[a-z0-9_]+/g)) names.add(m[0]);
  }
  return [...names].sort();
}
