/**
 * `npm run bench:device:bundle [-- --dir DIR]`
 *
 * Packs everything `bench:device` needs on a GPU machine that has no Node.js and reaches no registry,
 * into DIR (default `.bench-out/device-bundle/`, ignored by git), for `bench/device/launch.sh` to unpack:
 *   node.xz          this machine's Node binary, xz -9 (94 MiB → 23 MiB); reused while the binary is unchanged
 *   runtime.tar.xz   bench-device.mjs (the bench and the project code it imports, one esbuild bundle),
 *                    onnxruntime-node's JS and its Linux x64 native files, onnxruntime-common, and
 *                    lib/libvulkan.so.1 (the Vulkan loader; the GPU's driver brings the ICD)
 * The device tool carries at most 64 MiB (working tree and carried paths together): the build fails
 * above that and prints both sizes.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, statSync } from "node:fs";
import { cp, mkdir, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";
import { parseArgs } from "node:util";
import { build } from "esbuild";

const CARRY_LIMIT_BYTES = 64 * 1024 * 1024;
const DEFAULT_BUNDLE_DIR = ".bench-out/device-bundle";
const ORT_NATIVE = "bin/napi-v6/linux/x64";

const repoRoot = path.resolve(import.meta.dirname, "../..");
const require = createRequire(import.meta.url);

function fail(message: string): never {
  process.stderr.write(`bench:device:bundle: ${message}\n`);
  process.exit(2);
}

/** The installed package's folder: up from its entry point to the package.json that names it (its exports hide package.json). */
function packageDir(name: string): string {
  let dir = path.dirname(require.resolve(name, { paths: [repoRoot] }));
  while (dir !== path.dirname(dir)) {
    const manifest = path.join(dir, "package.json");
    if (existsSync(manifest) && JSON.parse(readFileSync(manifest, "utf8")).name === name) return dir;
    dir = path.dirname(dir);
  }
  fail(`package ${name} is not installed (npm ci)`);
}

/** The Vulkan loader as the system's dynamic linker would find it (Debian's libvulkan1). */
function findVulkanLoader(): string {
  let listing = "";
  try {
    listing = execFileSync("ldconfig", ["-p"], { encoding: "utf8" });
  } catch {
    // no ldconfig on PATH: fall through to the usual places
  }
  const fromCache = listing.split("\n").find((l) => /libvulkan\.so\.1 \(.*x86-64/.test(l))?.split("=> ")[1]?.trim();
  const found = [fromCache, "/usr/lib/x86_64-linux-gnu/libvulkan.so.1", "/lib/x86_64-linux-gnu/libvulkan.so.1"].find((p) => p && existsSync(p));
  if (found) return found;
  fail("libvulkan.so.1 (x86-64) not found: install the Vulkan loader (apt-get install libvulkan1)");
}

/** xz -9 of the Node binary, redone only when the binary changes (it takes a minute or two). */
async function compressNode(outFile: string): Promise<void> {
  const nodeBin = process.execPath;
  const st = await stat(nodeBin);
  const stamp = `${nodeBin} ${process.version} ${st.size} ${st.mtimeMs}`;
  const stampFile = `${outFile}.source`;
  const old = await readFile(stampFile, "utf8").catch(() => "");
  if (old === stamp && (await stat(outFile).then((s) => s.size > 0, () => false))) return;
  process.stderr.write(`compressing ${nodeBin} (${process.version}) with xz -9 …\n`);
  await rm(stampFile, { force: true });
  // Into a temp name first: an interrupted xz must not leave a truncated node.xz that looks current.
  execFileSync("sh", ["-c", 'xz -9 -T2 -c "$0" > "$1.partial" && mv "$1.partial" "$1"', nodeBin, outFile], { stdio: ["ignore", "ignore", "inherit"] });
  await writeFile(stampFile, stamp);
}

/** Bytes the device tool would send besides the bundle: tracked files and untracked files git does not ignore. */
function workingTreeBytes(): number {
  let listing: string;
  try {
    listing = execFileSync("git", ["ls-files", "-z", "--cached", "--others", "--exclude-standard"], { cwd: repoRoot, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
  } catch {
    fail(`${repoRoot} is not a git checkout: cannot size the working tree that travels with the bundle`);
  }
  const files = listing.split("\0").filter(Boolean);
  let total = 0;
  for (const f of files) total += statSync(path.join(repoRoot, f), { throwIfNoEntry: false })?.size ?? 0; // deleted files do not travel
  return total;
}

async function buildDeviceBundle(dir: string): Promise<{ bundleBytes: number; files: Record<string, number> }> {
  await mkdir(dir, { recursive: true });
  const stage = path.join(dir, "stage");
  await rm(stage, { recursive: true, force: true });
  await mkdir(path.join(stage, "lib"), { recursive: true });

  // One ESM file: the bench and the project code it imports. onnxruntime-node stays a package (native files).
  await build({
    entryPoints: [path.join(repoRoot, "bench/device.ts")],
    outfile: path.join(stage, "bench-device.mjs"),
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    external: ["onnxruntime-node"],
    // CommonJS dependencies (protobufjs) call require(); give the ESM bundle one.
    banner: { js: "import { createRequire as __benchCreateRequire } from 'node:module'; const require = __benchCreateRequire(import.meta.url);" },
    logLevel: "warning",
  });

  const ortNode = packageDir("onnxruntime-node");
  const ortCommon = packageDir("onnxruntime-common");
  const stagedOrt = path.join(stage, "node_modules/onnxruntime-node");
  for (const part of ["package.json", "dist", ORT_NATIVE]) await cp(path.join(ortNode, part), path.join(stagedOrt, part), { recursive: true });
  for (const part of ["package.json", "dist"]) await cp(path.join(ortCommon, part), path.join(stage, "node_modules/onnxruntime-common", part), { recursive: true });
  await cp(findVulkanLoader(), path.join(stage, "lib/libvulkan.so.1"), { dereference: true });

  const runtime = path.join(dir, "runtime.tar.xz");
  execFileSync("tar", ["-cf", runtime, "-I", "xz -9 -T2", "-C", stage, "."], { stdio: ["ignore", "ignore", "inherit"] });
  await rm(stage, { recursive: true, force: true });
  await compressNode(path.join(dir, "node.xz"));

  // Everything in the folder travels when it is carried, so everything counts.
  const files: Record<string, number> = {};
  let bundleBytes = 0;
  for (const name of await readdir(dir)) {
    const size = (await stat(path.join(dir, name))).size;
    files[name] = size;
    bundleBytes += size;
  }
  return { bundleBytes, files };
}

async function main(): Promise<void> {
  let values: { dir?: string };
  try {
    ({ values } = parseArgs({ args: process.argv.slice(2), options: { dir: { type: "string" } }, strict: true }));
  } catch (err) {
    fail((err as Error).message);
  }
  if (process.platform !== "linux" || process.arch !== "x64") fail(`the GPU machine is x86-64 Linux: build the bundle on one (this is ${process.platform} ${process.arch})`);
  for (const tool of ["xz", "tar"]) {
    try {
      execFileSync("sh", ["-c", `command -v ${tool}`], { stdio: "ignore" });
    } catch {
      fail(`${tool} is not on PATH (apt-get install xz-utils tar)`);
    }
  }
  const dir = path.resolve(repoRoot, values.dir ?? DEFAULT_BUNDLE_DIR);
  const { bundleBytes, files } = await buildDeviceBundle(dir);
  const tree = workingTreeBytes();
  const mib = (b: number) => `${(b / 1048576).toFixed(1)} MiB`;
  for (const [name, size] of Object.entries(files)) console.log(`  ${name.padEnd(16)} ${mib(size)}`);
  console.log(`bundle ${path.relative(repoRoot, dir)}: ${mib(bundleBytes)}; with the working tree (${mib(tree)}): ${mib(bundleBytes + tree)} of ${mib(CARRY_LIMIT_BYTES)}`);
  if (bundleBytes + tree > CARRY_LIMIT_BYTES) fail(`bundle and working tree are ${mib(bundleBytes + tree)}, over the device tool's ${mib(CARRY_LIMIT_BYTES)}`);
}

await main();
