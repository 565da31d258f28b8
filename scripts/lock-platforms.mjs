// Adds lockfile entries for other platforms' optional binary packages (biome, turbo, buf, ...).
//
// The npm registry mirror this project installs from serves only the linux-x64 builds, so
// `npm install` leaves the other platforms' optional packages out of package-lock.json, and
// `npm ci` then refuses the lockfile as out of sync. An entry with `os`/`cpu` set is enough:
// npm skips it on a non-matching platform without fetching it. Run after every `npm install`:
//   node scripts/lock-platforms.mjs
import { readFileSync, writeFileSync } from "node:fs";

const LOCK = new URL("../package-lock.json", import.meta.url);
const lock = JSON.parse(readFileSync(LOCK, "utf8"));

function platformOf(name) {
  const n = name.split("/").pop();
  const os = /darwin|^mac/.test(n)
    ? "darwin"
    : /win32|windows|^win/.test(n)
      ? "win32"
      : n.includes("android")
        ? "android"
        : "linux";
  const cpu = n.includes("arm64")
    ? "arm64"
    : n.includes("armv7")
      ? "arm"
      : n.includes("riscv64")
        ? "riscv64"
        : "x64";
  return { os, cpu, libc: n.includes("musl") ? ["musl"] : null };
}

const packages = lock.packages;
const added = [];
for (const meta of Object.values(packages)) {
  for (const [dep, version] of Object.entries(meta.optionalDependencies ?? {})) {
    const path = `node_modules/${dep}`;
    if (packages[path]) continue;
    const { os, cpu, libc } = platformOf(dep);
    packages[path] = {
      version,
      cpu: [cpu],
      ...(meta.dev ? { dev: true } : {}),
      ...(libc ? { libc } : {}),
      optional: true,
      os: [os],
    };
    added.push(path);
  }
}
const { "": root, ...rest } = packages;
lock.packages = {
  "": root,
  ...Object.fromEntries(Object.entries(rest).sort(([a], [b]) => (a < b ? -1 : 1))),
};
writeFileSync(LOCK, `${JSON.stringify(lock, null, 2)}\n`);
console.log(
  added.length ? `added ${added.length} entries: ${added.join(", ")}` : "lockfile complete",
);
