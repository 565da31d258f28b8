/**
 * How the supervisor starts a service. From TypeScript sources (`npm start`, tests) a child runs
 * `services/<name>/src/main.ts` under tsx; from the compiled build (`node
 * services/cluster/dist/main.js`, the container images) it runs `services/<name>/dist/main.js`
 * with plain Node, so production never loads tsx or TypeScript.
 */
export function isCompiledBuild(moduleUrl: string = import.meta.url): boolean {
  return moduleUrl.endsWith(".js");
}

/** Node arguments (relative to the repository root) that run service `name`. */
export function serviceEntryArgs(name: string, isCompiled: boolean = isCompiledBuild()): string[] {
  return isCompiled
    ? [`services/${name}/dist/main.js`]
    : ["--import", "tsx", `services/${name}/src/main.ts`];
}
