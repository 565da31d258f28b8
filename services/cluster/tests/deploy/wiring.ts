import type { K8sObject } from "./render";

/**
 * Wiring checks over one rendered release. Each returns a list of problems (empty: wired), so
 * a failing test names every broken reference at once.
 */

// biome-ignore lint/suspicious/noExplicitAny: pod specs are walked field by field.
type Pod = { readonly owner: string; readonly labels: Record<string, string>; readonly spec: any };

const WORKLOAD_KINDS = new Set(["Deployment", "StatefulSet"]);

/** The pod templates of every Deployment and StatefulSet. */
export function podTemplates(objects: readonly K8sObject[]): Pod[] {
  return objects
    .filter((o) => WORKLOAD_KINDS.has(o.kind))
    .map((o) => ({
      owner: `${o.kind}/${o.metadata.name}`,
      labels: o.spec.template.metadata.labels ?? {},
      spec: o.spec.template.spec,
    }));
}

const matches = (selector: Record<string, string>, labels: Record<string, string>) =>
  Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v);

/** Named and numbered container ports of a pod. */
function podPorts(pod: Pod): { names: Set<string>; numbers: Set<number> } {
  // biome-ignore lint/suspicious/noExplicitAny: see above.
  const ports = pod.spec.containers.flatMap((c: any) => c.ports ?? []);
  return {
    // biome-ignore lint/suspicious/noExplicitAny: see above.
    names: new Set(ports.map((p: any) => p.name)),
    // biome-ignore lint/suspicious/noExplicitAny: see above.
    numbers: new Set(ports.map((p: any) => p.containerPort)),
  };
}

/** Every Service selects a pod template, and each of its target ports exists on those pods. */
export function checkServices(objects: readonly K8sObject[]): string[] {
  const pods = podTemplates(objects);
  const problems: string[] = [];
  for (const svc of objects.filter((o) => o.kind === "Service")) {
    const selected = pods.filter((p) => matches(svc.spec.selector ?? {}, p.labels));
    if (selected.length === 0) problems.push(`Service/${svc.metadata.name} selects no pods`);
    for (const port of svc.spec.ports) {
      const target = port.targetPort ?? port.port;
      for (const pod of selected) {
        const { names, numbers } = podPorts(pod);
        if (!(names.has(target) || numbers.has(target))) {
          problems.push(
            `Service/${svc.metadata.name} port ${target} is not a port of ${pod.owner}`,
          );
        }
      }
    }
  }
  return problems;
}

/** Every startup/readiness/liveness probe exists and points at a port its container declares. */
export function checkProbes(objects: readonly K8sObject[]): string[] {
  const problems: string[] = [];
  for (const pod of podTemplates(objects)) {
    for (const c of pod.spec.containers) {
      // biome-ignore lint/suspicious/noExplicitAny: see above.
      const names = new Set((c.ports ?? []).map((p: any) => p.name));
      // biome-ignore lint/suspicious/noExplicitAny: see above.
      const numbers = new Set((c.ports ?? []).map((p: any) => p.containerPort));
      for (const kind of ["startupProbe", "readinessProbe", "livenessProbe"]) {
        const probe = c[kind];
        if (!probe) {
          problems.push(`${pod.owner}/${c.name} has no ${kind}`);
          continue;
        }
        if (probe.exec) continue;
        const port = probe.grpc?.port ?? probe.httpGet?.port ?? probe.tcpSocket?.port;
        if (!(names.has(port) || numbers.has(port))) {
          problems.push(`${pod.owner}/${c.name} ${kind} port ${port} is not a container port`);
        }
      }
    }
  }
  return problems;
}

/** Names of Secrets, ConfigMaps and PVCs the pods reference, as "Kind/name" with where. */
export function referencedObjects(objects: readonly K8sObject[]): Map<string, string> {
  const refs = new Map<string, string>();
  for (const pod of podTemplates(objects)) {
    for (const v of pod.spec.volumes ?? []) {
      if (v.secret) refs.set(`Secret/${v.secret.secretName}`, pod.owner);
      if (v.configMap) refs.set(`ConfigMap/${v.configMap.name}`, pod.owner);
      if (v.persistentVolumeClaim) {
        refs.set(`PersistentVolumeClaim/${v.persistentVolumeClaim.claimName}`, pod.owner);
      }
    }
    for (const c of pod.spec.containers) {
      for (const e of c.env ?? []) {
        const secret = e.valueFrom?.secretKeyRef?.name;
        const configMap = e.valueFrom?.configMapKeyRef?.name;
        if (secret) refs.set(`Secret/${secret}`, pod.owner);
        if (configMap) refs.set(`ConfigMap/${configMap}`, pod.owner);
      }
    }
  }
  for (const ing of objects.filter((o) => o.kind === "Ingress")) {
    for (const tls of ing.spec.tls ?? []) refs.set(`Secret/${tls.secretName}`, ing.metadata.name);
  }
  return refs;
}

/** Names that select pods (PDBs) or scale objects (ScaledObject) resolve within the release. */
export function checkSelectorsAndTargets(objects: readonly K8sObject[]): string[] {
  const pods = podTemplates(objects);
  const problems: string[] = [];
  for (const pdb of objects.filter((o) => o.kind === "PodDisruptionBudget")) {
    if (!pods.some((p) => matches(pdb.spec.selector.matchLabels, p.labels))) {
      problems.push(`PodDisruptionBudget/${pdb.metadata.name} selects no pods`);
    }
  }
  for (const np of objects.filter((o) => o.kind === "NetworkPolicy")) {
    if (!pods.some((p) => matches(np.spec.podSelector.matchLabels, p.labels))) {
      problems.push(`NetworkPolicy/${np.metadata.name} selects no pods`);
    }
  }
  for (const so of objects.filter((o) => o.kind === "ScaledObject")) {
    const { kind, name } = so.spec.scaleTargetRef;
    if (!objects.some((o) => o.kind === kind && o.metadata.name === name)) {
      problems.push(`ScaledObject/${so.metadata.name} targets missing ${kind}/${name}`);
    }
  }
  const services = objects.filter((o) => o.kind === "Service");
  for (const sm of objects.filter((o) => o.kind === "ServiceMonitor")) {
    const selected = services.filter((s) =>
      matches(sm.spec.selector.matchLabels, s.metadata.labels ?? {}),
    );
    if (selected.length === 0)
      problems.push(`ServiceMonitor/${sm.metadata.name} selects no Service`);
    for (const ep of sm.spec.endpoints) {
      // biome-ignore lint/suspicious/noExplicitAny: see above.
      if (!selected.every((s) => s.spec.ports.some((p: any) => p.name === ep.port))) {
        problems.push(
          `ServiceMonitor/${sm.metadata.name} scrapes port ${ep.port} its Service lacks`,
        );
      }
      const job = selected[0]?.metadata.labels?.[sm.spec.jobLabel];
      if (!job?.startsWith("kiln-")) {
        problems.push(`ServiceMonitor/${sm.metadata.name}: job label ${sm.spec.jobLabel} not set`);
      }
    }
  }
  return problems;
}

/** Only the gateway's NetworkPolicy admits traffic from anywhere. */
export function openIngressPolicies(objects: readonly K8sObject[]): string[] {
  return (
    objects
      .filter((o) => o.kind === "NetworkPolicy")
      // biome-ignore lint/suspicious/noExplicitAny: see above.
      .filter((np) => np.spec.ingress.some((rule: any) => !rule.from || rule.from.length === 0))
      .map((np) => np.spec.podSelector.matchLabels["app.kubernetes.io/component"])
  );
}

/** Every environment variable name the pods set, with the containers that set it. */
export function envNames(objects: readonly K8sObject[]): Map<string, string[]> {
  const names = new Map<string, string[]>();
  for (const pod of podTemplates(objects)) {
    for (const c of pod.spec.containers) {
      for (const e of c.env ?? []) names.set(e.name, [...(names.get(e.name) ?? []), c.name]);
    }
  }
  return names;
}
