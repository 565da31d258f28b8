/**
 * One scrape for a laptop: under `npm start` the gateway's `/metrics` also carries the router's
 * and workers' `kiln_*` series, fetched from their own `/metrics` at each scrape and appended to
 * the gateway's exposition. In Kubernetes no upstreams are configured (each pod is scraped on
 * its own) and nothing is fetched.
 *
 * Families are merged by name: a family the gateway already exposes (its mirror of the router's
 * scheduler state) is kept from the gateway alone, so no family appears twice; a family several
 * upstreams expose (a worker metric from two workers) gets one HELP/TYPE header and every
 * upstream's samples (they differ by their `replica` label). Only `kiln_*` families are taken:
 * `process_*`/`nodejs_*` would collide across processes without an `instance` label. Every
 * relayed sample carries `relayed_by="gateway"`, so a Prometheus that also scrapes router and
 * workers drops the copies with one rule, whatever families exist.
 */

/** The label every relayed sample carries. */
export const RELAYED_LABEL = 'relayed_by="gateway"';

/** One metric family of a Prometheus text exposition. */
export interface Family {
  readonly name: string;
  readonly header: string[];
  readonly samples: string[];
}

const FETCH_TIMEOUT_MS = 2000;

/** The families of a text exposition (format 0.0.4), in order. */
export function parseExposition(text: string): Family[] {
  const families: Family[] = [];
  let current: Family | undefined;
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const meta = /^# (HELP|TYPE) (\S+)/.exec(line);
    if (meta) {
      const name = meta[2]!;
      let family: Family | undefined = current;
      if (family === undefined || family.name !== name) {
        family = { name, header: [], samples: [] };
        families.push(family);
      }
      family.header.push(line);
      current = family;
    } else if (!line.startsWith("#") && current !== undefined) {
      current.samples.push(line);
    }
  }
  return families;
}

/**
 * `own` followed by the `kiln_*` families of `upstreams` that `own` lacks. Sample lines that
 * are identical up to their value (the same series from two sources) are kept once.
 */
export function mergeExpositions(own: string, upstreams: readonly string[]): string {
  const ownNames = new Set(parseExposition(own).map((f) => f.name));
  const merged = new Map<string, Family>();
  for (const text of upstreams) {
    for (const family of parseExposition(text)) {
      if (!family.name.startsWith("kiln_") || ownNames.has(family.name)) continue;
      const into = merged.get(family.name);
      const samples = family.samples.map(withRelayedLabel);
      if (!into) {
        merged.set(family.name, { ...family, samples });
        continue;
      }
      const seriesKeys = new Set(into.samples.map(seriesKey));
      for (const sample of samples) {
        if (!seriesKeys.has(seriesKey(sample))) into.samples.push(sample);
      }
    }
  }
  const extra = [...merged.values()].map((f) => [...f.header, ...f.samples].join("\n"));
  if (extra.length === 0) return own;
  return `${own.replace(/\n*$/, "\n")}${extra.join("\n")}\n`;
}

/** `name{a="b"} 1` → `name{relayed_by="gateway",a="b"} 1`; `name 1` → `name{relayed_by="gateway"} 1`. */
function withRelayedLabel(sample: string): string {
  const space = sample.indexOf(" ");
  const brace = sample.indexOf("{");
  if (brace >= 0 && (space < 0 || brace < space)) {
    const rest = sample.slice(brace + 1);
    return `${sample.slice(0, brace + 1)}${RELAYED_LABEL}${rest.startsWith("}") ? "" : ","}${rest}`;
  }
  return `${sample.slice(0, space)}{${RELAYED_LABEL}}${sample.slice(space)}`;
}

/** A sample line without its value (and timestamp): the series it belongs to. */
function seriesKey(sample: string): string {
  const close = sample.lastIndexOf("}");
  return close >= 0 ? sample.slice(0, close + 1) : (sample.split(" ")[0] ?? sample);
}

/**
 * Fetches every upstream's `/metrics` (in parallel, each within 2 s). An upstream that fails
 * contributes nothing this scrape, so one dead process never breaks the gateway's `/metrics`;
 * `kiln_metrics_upstream_up{upstream}` says which answered.
 */
export async function fetchUpstreams(urls: readonly string[]): Promise<string[]> {
  const results = await Promise.all(
    urls.map(async (url) => {
      try {
        const res = await fetch(url, { signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
        return res.ok ? await res.text() : null;
      } catch {
        return null;
      }
    }),
  );
  const up = [
    "# HELP kiln_metrics_upstream_up 1 when the gateway's last fetch of this upstream /metrics succeeded.",
    "# TYPE kiln_metrics_upstream_up gauge",
    ...urls.map(
      (url, i) => `kiln_metrics_upstream_up{upstream="${url}"} ${results[i] === null ? 0 : 1}`,
    ),
  ].join("\n");
  return [...results.filter((r): r is string => r !== null), up];
}
