/**
 * The Kubernetes objects as a cluster would receive them — `kubectl kustomize`
 * of the base and each overlay, `helm template` of the chart with each values
 * file in its ci/ folder — checked against the gateway and each other: memory
 * budgets within the pod's limit, a heap cap only where the runtime has one,
 * shutdown timings against the load balancer, TRUST_PROXY against the proxies
 * shipped, credentials only from Secrets, images by digest where a registry is
 * set, autoscaling metrics the gateway exports, and the alert rules loaded by
 * the Prometheus Operator equal to deploy/prometheus/alerts.yml.
 *
 *   bun test --timeout 60000 deploy/rendered.test.ts     (deploy/check runs it)
 */
import { describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "../src/config/config.ts";
import { createMetrics } from "../src/metrics/metrics.ts";
import { prometheusRule } from "./sync-rules.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const DEPLOY = join(ROOT, "deploy");
const CHART = join(DEPLOY, "helm/edge-gateway");
/** The oldest Kubernetes deploy/check validates against; the chart's kubeVersion. */
const KUBE_VERSION = "1.29.0";
const MiB = 1024 * 1024;

// biome-ignore lint/suspicious/noExplicitAny: Kubernetes objects differ per kind; each test reads what it checks.
type K8s = any;
type Env = Record<string, string>;

function run(command: string[]): string {
  const result = Bun.spawnSync(command, { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  if (result.exitCode !== 0) throw new Error(`${command.join(" ")}: ${result.stderr.toString()}`);
  return result.stdout.toString();
}

function documents(yaml: string): K8s[] {
  const parsed = Bun.YAML.parse(yaml);
  return (Array.isArray(parsed) ? parsed : [parsed]).filter((doc) => doc && typeof doc === "object");
}

interface Rendering {
  name: string;
  objects: K8s[];
}

const kubectl = Bun.which("kubectl");
/** scripts/install-tools builds helm into the cache's bin folder. */
const cachedHelm = join(
  process.env.EDGE_GATEWAY_CACHE ?? join(process.env.HOME ?? "", ".cache/edge-gateway"),
  "bin/helm",
);
const helm = Bun.which("helm") ?? (existsSync(cachedHelm) ? cachedHelm : undefined);
const renderings: Rendering[] = [];
if (kubectl) {
  for (const dir of ["base", "overlays/aws", "overlays/node", "overlays/node24"]) {
    const objects = documents(run([kubectl, "kustomize", join(DEPLOY, "k8s", dir)]));
    renderings.push({ name: `kustomize ${dir}`, objects });
  }
} else console.warn("deploy/rendered.test.ts: kubectl not installed, Kustomize output not checked");
if (helm) {
  for (const file of [...new Bun.Glob("*-values.yaml").scanSync(join(CHART, "ci"))].sort()) {
    const objects = documents(
      run([helm, "template", "gw", CHART, "--kube-version", KUBE_VERSION, "-f", join(CHART, "ci", file)]),
    );
    renderings.push({ name: `helm ${file}`, objects });
  }
} else
  console.warn(
    "deploy/rendered.test.ts: helm not installed (scripts/install-tools builds it), chart not checked",
  );

const alertsSource = await Bun.file(join(DEPLOY, "prometheus/alerts.yml")).text();
const alerts = Bun.YAML.parse(alertsSource) as {
  groups: Array<{ rules: Array<{ alert: string; expr: string; annotations: Env }> }>;
};
const adapterValues = Bun.YAML.parse(
  await Bun.file(join(DEPLOY, "k8s/prometheus-adapter/values.yaml")).text(),
) as { rules: { custom: Array<{ seriesQuery: string; name: { as: string }; metricsQuery: string }> } };
const results = await Bun.file(join(ROOT, "loadtest/RESULTS.md")).text();
/** Every variable the gateway's config reads, sorted. */
const gatewaySettings = [
  ...new Set(
    [...(await Bun.file(join(ROOT, "src/config/config.ts")).text()).matchAll(/read\("([A-Z0-9_]+)"/g)].map(
      (match) => match[1] as string,
    ),
  ),
].sort();
const runbooks = await Bun.file(join(ROOT, "docs/runbooks.md")).text();

// ---------------------------------------------------------------- helpers

function only(objects: K8s[], kind: string): K8s {
  const found = objects.filter((object) => object.kind === kind);
  if (found.length !== 1) throw new Error(`expected one ${kind}, found ${found.length}`);
  return found[0];
}

function gatewayContainer(objects: K8s[]): K8s {
  return only(objects, "Deployment").spec.template.spec.containers.find((c: K8s) => c.name === "gateway");
}

/** Stands in for a value from a Secret: long enough for any secret the config checks. */
const SECRET_PLACEHOLDER = "value-from-a-kubernetes-secret-0123456789";

/** The environment the gateway container sees: ConfigMap, then env (required Secret keys as placeholders). */
function podEnv(objects: K8s[]): Env {
  const container = gatewayContainer(objects);
  const env: Env = {};
  for (const source of container.envFrom ?? []) {
    const map = objects.find((o) => o.kind === "ConfigMap" && o.metadata.name === source.configMapRef?.name);
    Object.assign(env, map?.data ?? {});
  }
  for (const entry of container.env ?? []) {
    if (entry.value !== undefined) env[entry.name] = entry.value;
    else if (entry.valueFrom?.secretKeyRef && !entry.valueFrom.secretKeyRef.optional)
      env[entry.name] = SECRET_PLACEHOLDER;
  }
  return env;
}

/** Kubernetes quantities as bytes (Mi, Gi) or cores (m). */
function bytes(quantity: string): number {
  const match = /^(\d+)(Mi|Gi)$/.exec(quantity);
  if (!match) throw new Error(`unexpected memory quantity ${quantity}`);
  return Number(match[1]) * (match[2] === "Gi" ? 1024 * MiB : MiB);
}
function cores(quantity: string): number {
  return quantity.endsWith("m") ? Number(quantity.slice(0, -1)) / 1000 : Number(quantity);
}

/** Rows of every Markdown table in RESULTS.md whose header has `column`, as {case, value}. */
function resultsColumn(column: string): Array<{ name: string; cell: string }> {
  const rows: Array<{ name: string; cell: string }> = [];
  let index = -1;
  for (const line of results.split("\n")) {
    if (!line.startsWith("|")) {
      index = -1;
      continue;
    }
    const cells = line.split("|").map((cell) => cell.trim());
    if (index < 0) index = cells.indexOf(column);
    else if (!cells[1]?.startsWith("---")) rows.push({ name: cells[1] as string, cell: cells[index] ?? "" });
  }
  return rows;
}

/**
 * What one pod holds beyond the configured bounds, from loadtest/RESULTS.md:
 * each runtime's highest peak RSS in a one-process gateway case (the working
 * set under load), and the cost of an idle subscribed socket (the highest
 * median measured, and never less than the 4 KiB the suite holds it to).
 */
const measured = (() => {
  const workingSet = { bun: 0, node: 0 };
  for (const { name, cell } of resultsColumn("peak RSS MiB")) {
    const runtime = /^(?:(node|bun)-(?:kafka|local)-\d+|fanout-(node|bun))$/.exec(name);
    const rss = Number(cell);
    if (!runtime || !Number.isFinite(rss)) continue;
    const key = (runtime[1] ?? runtime[2]) as "bun" | "node";
    workingSet[key] = Math.max(workingSet[key], rss * MiB);
  }
  const socketMedians = resultsColumn("KiB per idle subscribed socket")
    .map(({ cell }) => Number.parseFloat(cell))
    .filter(Number.isFinite);
  return { workingSet, socketBytes: Math.max(4, ...socketMedians) * 1024, socketMedians };
})();

/**
 * What a pod can hold that grows with traffic, each part at its configured
 * bound (docs/deploy.md#memory), and the runtime's measured working set. The
 * manifests take REDIS_URL from an optional Secret key: without it the
 * Idempotency-Key answers are kept in memory. A resume read from the fan-out
 * topic holds up to REPLAY_MAX_BYTES read and as much of live events held
 * back, REPLAY_MAX_CONCURRENT at once.
 */
function memoryBudget(config: ReturnType<typeof loadConfig>, runtime: "bun" | "node" | "node24") {
  return {
    history: config.history.maxBytes,
    queue: config.kafka.queueMaxBytes,
    sockets: config.ws.maxConnections * measured.socketBytes,
    idempotency: config.idempotency.maxBytes,
    replays: config.replay.maxConcurrent * 2 * config.replay.maxBytes,
    // Node 24's working set is taken as Node 20's (measured): the same bundle on the same engine family.
    workingSet: measured.workingSet[runtime === "bun" ? "bun" : "node"],
  };
}

/** The image target, from the pod template's annotation (a digest does not say which). */
function runtimeOf(objects: K8s[]): "bun" | "node" | "node24" {
  return only(objects, "Deployment").spec.template.metadata.annotations["edge-gateway/image-target"];
}

/** Egress ports a NetworkPolicy opens to any destination. */
function openEgressPorts(policy: K8s): Set<number> {
  return new Set(
    policy.spec.egress
      .filter((rule: K8s) => !rule.to)
      .flatMap((rule: K8s) => rule.ports.map((p: K8s) => p.port)),
  );
}

/** The ports the settings make the gateway connect to: the brokers', and each http(s) URL's (or its scheme's). */
function portsNamed(config: ReturnType<typeof loadConfig>): number[] {
  const urls = [
    config.auth.jwksUrl,
    config.schemas.source,
    config.rateLimit.tenantQuotas,
    config.s3.endpoint,
    config.tracing.tracesUrl,
  ].filter((value): value is string => value !== undefined && /^https?:\/\//.test(value));
  return [
    ...(config.kafka.brokers ?? []).map((broker) => Number(/(\d+)$/.exec(broker)?.[1])),
    ...urls.map((url) => {
      const { port, protocol } = new URL(url);
      return Number(port || (protocol === "https:" ? 443 : 80));
    }),
  ];
}

const ALB_INGRESS = (objects: K8s[]) =>
  objects.find((o) => o.kind === "Ingress" && o.spec.ingressClassName === "alb");

// ---------------------------------------------------------------- tests

test("every renderer ran: Kustomize (base, aws, node, node24) and the chart (every ci/ values file)", () => {
  expect(renderings.map((r) => r.name)).toEqual([
    ...(kubectl
      ? ["kustomize base", "kustomize overlays/aws", "kustomize overlays/node", "kustomize overlays/node24"]
      : []),
    ...(helm
      ? [
          "helm default-values.yaml",
          "helm eks-values.yaml",
          "helm node-jwks-values.yaml",
          "helm node24-values.yaml",
        ]
      : []),
  ]);
  expect(helm).toBeTruthy();
});

test("the memory figures come from loadtest/RESULTS.md", () => {
  expect(measured.workingSet.bun).toBeGreaterThan(100 * MiB);
  expect(measured.workingSet.node).toBeGreaterThan(100 * MiB);
  expect(measured.socketMedians.length).toBeGreaterThan(1);
});

describe.each(renderings)("$name", ({ objects }) => {
  const env = podEnv(objects);
  const config = loadConfig(env);
  const container = gatewayContainer(objects);
  const pod = only(objects, "Deployment").spec.template.spec;
  const runtime = runtimeOf(objects);

  test("the pod's environment is a valid gateway configuration", () => {
    expect(config.workers).toBe(1);
    expect(config.kafka.brokers?.length).toBeGreaterThan(0);
  });

  test("every variable the pod's environment sets is read by the gateway (NODE_OPTIONS by the runtime): none is ignored", () => {
    const ignored = Object.keys(env).filter(
      (name) => name !== "NODE_OPTIONS" && !gatewaySettings.includes(name),
    );
    expect(ignored).toEqual([]);
  });

  test("memory: every in-memory bound + the runtime's working set fit in 70% of the limit", () => {
    const limit = bytes(container.resources.limits.memory);
    expect(bytes(container.resources.requests.memory)).toBe(limit);
    const budget = memoryBudget(config, runtime);
    const total = Object.values(budget).reduce((sum, part) => sum + part, 0);
    expect({ ...budget, total, share: total / limit }).toMatchObject({ share: expect.any(Number) });
    expect(total / limit).toBeLessThanOrEqual(0.7);
  });

  test("a heap cap only where the runtime has one: NODE_OPTIONS on the Node targets, none on Bun", () => {
    expect(["bun", "node", "node24"]).toContain(runtime);
    // A tagged image says its target too: -node and -node24 tags, none for Bun (the default).
    const tag = /:([^/@]+)$/.exec(container.image)?.[1];
    if (tag !== undefined)
      expect(/-(node|node24)$/.exec(tag)?.[1]).toBe(runtime === "bun" ? undefined : runtime);
    const nodeOptions = env.NODE_OPTIONS;
    if (runtime === "bun") {
      expect(nodeOptions).toBeUndefined();
      return;
    }
    const oldSpace = Number(/--max-old-space-size=(\d+)/.exec(nodeOptions ?? "")?.[1]) * MiB;
    // What lives on the heap (all but the queue's buffers) fits, with room for the live set.
    const { queue: _offHeap, workingSet: _measuredApart, ...onHeap } = memoryBudget(config, runtime);
    expect(oldSpace).toBeGreaterThanOrEqual(
      Object.values(onHeap).reduce((sum, part) => sum + part, 0) + 64 * MiB,
    );
    // Old space, the young generation (3 x --max-semi-space-size=64 in the image) and the
    // queue's buffers (outside the heap) stay under the limit.
    expect(oldSpace + 3 * 64 * MiB + config.kafka.queueMaxBytes).toBeLessThan(
      bytes(container.resources.limits.memory),
    );
  });

  test("a change of setting rolls the pods: the ConfigMap's name is a hash of it (Kustomize), or the template carries its checksum (chart)", () => {
    // The gateway reads its settings at start only: a ConfigMap changed under the same name
    // left every pod on the old settings until it happened to restart.
    const [source] = container.envFrom.map((s: K8s) => s.configMapRef.name);
    const map = objects.find((o) => o.kind === "ConfigMap" && o.metadata.name === source);
    expect(map).toBeDefined();
    const checksum = only(objects, "Deployment").spec.template.metadata.annotations["checksum/config"];
    expect({
      hashedName: /^edge-gateway-[a-z0-9]{10}$/.test(source),
      checksum: checksum !== undefined,
    }).not.toEqual({ hashedName: false, checksum: false });
  });

  test("one core requested per pod", () => {
    expect(cores(container.resources.requests.cpu)).toBe(1);
  });

  test("readiness follows only startup and the drain: Kafka does not take pods out", () => {
    expect(config.kafka.affectsHealth).toBe(false);
    expect(container.readinessProbe.httpGet).toMatchObject({ path: "/health", port: "http" });
    expect(container.startupProbe.httpGet).toMatchObject({ path: "/health/live", port: "http" });
  });

  test("shutdown: grace outlasts preStop + DRAIN_TIMEOUT_MS; GatewayDrainStuck can fire before the drain's deadline", () => {
    const preStop = container.lifecycle.preStop.exec.command;
    expect(preStop[0]).toBe("sleep");
    const preStopMs = Number(preStop[1]) * 1000;
    expect(pod.terminationGracePeriodSeconds * 1000).toBeGreaterThan(preStopMs + config.drainTimeoutMs);
    const drainStuck = alerts.groups
      .flatMap((group) => group.rules)
      .find((rule) => rule.alert === "GatewayDrainStuck");
    const thresholdMs = Number(/> (\d+)\s*$/.exec(drainStuck?.expr ?? "")?.[1]) * 1000;
    const monitor = objects.find((o) => o.kind === "PodMonitor");
    const scrapeMs = Number.parseInt(monitor?.spec.podMetricsEndpoints[0].interval ?? "15s", 10) * 1000;
    expect(thresholdMs).toBeGreaterThan(config.drainDelayMs);
    expect(thresholdMs + scrapeMs).toBeLessThanOrEqual(config.drainTimeoutMs);
  });

  test("TRUST_PROXY counts the proxies shipped in front: 1 behind the ALB, else 0", () => {
    expect(config.rateLimit.trustProxyHops).toBe(ALB_INGRESS(objects) ? 1 : 0);
  });

  test("behind the ALB: IP targets, /health check, deregistration and idle timeouts that fit the gateway", () => {
    const ingress = ALB_INGRESS(objects);
    if (!ingress) return;
    const annotations: Env = ingress.metadata.annotations;
    expect(annotations["alb.ingress.kubernetes.io/target-type"]).toBe("ip");
    expect(annotations["alb.ingress.kubernetes.io/healthcheck-path"]).toBe("/health");
    const deregistrationS = Number(
      /deregistration_delay\.timeout_seconds=(\d+)/.exec(
        annotations["alb.ingress.kubernetes.io/target-group-attributes"] ?? "",
      )?.[1],
    );
    const idleS = Number(
      /idle_timeout\.timeout_seconds=(\d+)/.exec(
        annotations["alb.ingress.kubernetes.io/load-balancer-attributes"] ?? "",
      )?.[1],
    );
    expect(deregistrationS * 1000).toBeGreaterThan(config.ackTimeoutMs);
    // The ALB routes nothing new to a deregistering target within seconds: preStop outlasts that.
    const preStopS = Number(container.lifecycle.preStop.exec.command[1]);
    expect(preStopS).toBeGreaterThanOrEqual(15);
    // WebSockets open through the ALB get the drain's reconnect (sent over at most 2 s) before it closes them.
    expect(deregistrationS * 1000).toBeGreaterThan(preStopS * 1000 + config.drainDelayMs + 2000);
    expect(idleS * 1000).toBeGreaterThan(config.ws.pingIntervalMs);
    // The gateway keeps idle connections longer than the ALB does (AWS's rule for targets), or a
    // request the ALB sends as the gateway closes one gets a 502. Bun counts in 4 s ticks: a
    // timeout of N s may end after N - 4. uWebSockets.js's 10 s is fixed (the Node targets' known limit).
    if (runtime === "bun") expect(config.httpKeepAliveSec - 4).toBeGreaterThan(idleS);
    const backend = ingress.spec.rules[0].http.paths[0].backend.service;
    const service = only(objects, "Service");
    expect(backend).toEqual({ name: service.metadata.name, port: { name: "http" } });
  });

  test("credentials come only from Secrets", () => {
    for (const name of ["JWT_SECRET", "REDIS_URL", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"]) {
      const entry = container.env.find((e: K8s) => e.name === name);
      expect({ name, fromSecret: entry?.valueFrom?.secretKeyRef !== undefined }).toEqual({
        name,
        fromSecret: true,
      });
    }
    for (const map of objects.filter((o) => o.kind === "ConfigMap")) {
      for (const [name, value] of Object.entries((map.data ?? {}) as Env)) {
        expect({
          name,
          credential: /SECRET|PASSWORD|REDIS_URL/.test(name) || /\/\/[^/]*@/.test(value),
        }).toEqual({ name, credential: false });
      }
    }
  });

  test("an image from a registry is pinned by digest", () => {
    const image: string = container.image;
    const [first] = image.split("/");
    if (image.includes("/") && first?.includes(".")) {
      expect(image).toMatch(/^[a-z0-9.-]+\.[a-z]+(:\d+)?\/[a-z0-9./_-]+@sha256:[0-9a-f]{64}$/);
    }
  });

  test("pods spread over zones, then nodes, each revision on its own (matchLabelKeys: pod-template-hash)", () => {
    // Counted with the old revision's pods, a rollout places new pods beside old ones about to go.
    const labels = only(objects, "Deployment").spec.template.metadata.labels;
    for (const constraint of pod.topologySpreadConstraints)
      expect(labels).toMatchObject(constraint.labelSelector.matchLabels);
    expect(pod.topologySpreadConstraints.map((c: K8s) => [c.topologyKey, c.matchLabelKeys])).toEqual([
      ["topology.kubernetes.io/zone", ["pod-template-hash"]],
      ["kubernetes.io/hostname", ["pod-template-hash"]],
    ]);
  });

  test("PDB: one pod at a time, and unhealthy pods never block a node drain", () => {
    const pdb = only(objects, "PodDisruptionBudget");
    expect(pdb.spec.unhealthyPodEvictionPolicy).toBe("AlwaysAllow");
    expect(only(objects, "Deployment").spec.template.metadata.labels).toMatchObject(
      pdb.spec.selector.matchLabels,
    );
  });

  test("/metrics on the internal port: container port `metrics` = METRICS_PORT, scraped there, admitted only from a namespace", () => {
    const metricsPort = container.ports.find((p: K8s) => p.name === "metrics")?.containerPort;
    expect(metricsPort).toBe(config.metricsPort);
    const service = only(objects, "Service");
    expect(service.spec.ports.map((p: K8s) => p.targetPort)).toContain("metrics");
    const policy = objects.find((o) => o.kind === "NetworkPolicy");
    if (policy) {
      const rule = policy.spec.ingress.find((r: K8s) => r.ports.some((p: K8s) => p.port === metricsPort));
      expect(rule.from?.[0]?.namespaceSelector).toBeDefined();
    }
    const monitor = objects.find((o) => o.kind === "PodMonitor");
    if (monitor) {
      expect(monitor.spec.podMetricsEndpoints.map((e: K8s) => [e.port, e.path])).toEqual([
        ["metrics", "/metrics"],
      ]);
      // The alerts select job="edge-gateway": the job label comes from the pods' name label.
      const podLabels = only(objects, "Deployment").spec.template.metadata.labels;
      expect(podLabels[monitor.spec.jobLabel]).toBe("edge-gateway");
      expect(monitor.metadata.labels.release).toBeString();
      expect(podLabels).toMatchObject(monitor.spec.selector.matchLabels);
    }
  });

  test("a draining pod is still scraped: pods found by a PodMonitor, not through the Service's Endpoints", () => {
    // Endpoints drop a pod as soon as it is deleted: a ServiceMonitor stops scraping it before
    // preStop ends, so gateway_draining and the drain's start (GatewayDrainStuck) were never seen.
    expect(objects.filter((o) => o.kind === "ServiceMonitor")).toEqual([]);
    const monitor = objects.find((o) => o.kind === "PodMonitor");
    if (objects.some((o) => o.kind === "PrometheusRule")) expect(monitor).toBeDefined();
  });

  test("the NetworkPolicy lets the gateway reach every port its settings name: Kafka's listeners, Redis, HTTPS, OTLP", () => {
    const policy = objects.find((o) => o.kind === "NetworkPolicy");
    if (!policy) return;
    const open = openEgressPorts(policy);
    for (const port of [
      53,
      9092,
      9093,
      9094,
      9096,
      9098,
      6379,
      6380,
      443,
      4317,
      4318,
      ...portsNamed(config),
    ]) {
      expect({ port, open: open.has(port) }).toEqual({ port, open: true });
    }
  });

  test("with a pod role (IRSA or Pod Identity), the NetworkPolicy lets the Pod Identity agent through", () => {
    const policy = objects.find((o) => o.kind === "NetworkPolicy");
    if (!policy || !pod.serviceAccountName) return;
    const agent = policy.spec.egress.find((rule: K8s) =>
      rule.to?.some((peer: K8s) => peer.ipBlock?.cidr === "169.254.170.23/32"),
    );
    expect(agent?.ports).toEqual([{ protocol: "TCP", port: 80 }]);
    // Its address on IPv6 clusters too.
    expect(agent.to.map((peer: K8s) => peer.ipBlock.cidr)).toContain("fd00:ec2::23/128");
  });

  test("the PrometheusRule carries deploy/prometheus/alerts.yml, labelled for the Operator", () => {
    const rule = objects.find((o) => o.kind === "PrometheusRule");
    if (!rule) return;
    expect(rule.spec).toEqual({ groups: alerts.groups });
    expect(rule.metadata.labels.release).toBeString();
  });

  test("HPA: CPU and connections per pod, each Pods metric served by a shipped adapter rule", () => {
    const hpa = only(objects, "HorizontalPodAutoscaler");
    expect(hpa.spec.scaleTargetRef.name).toBe(only(objects, "Deployment").metadata.name);
    const types = hpa.spec.metrics.map((m: K8s) =>
      m.type === "Resource" ? m.resource.name : m.pods.metric.name,
    );
    expect(types).toEqual(["cpu", "gateway_connections"]);
    const served = adapterValues.rules.custom.map((rule) => rule.name.as);
    for (const metric of hpa.spec.metrics.filter((m: K8s) => m.type === "Pods"))
      expect(served).toContain(metric.pods.metric.name);
    // Far enough under the per-pod cap that scaling starts before sockets are refused.
    const target = Number(hpa.spec.metrics[1].pods.target.averageValue);
    expect(target).toBeLessThanOrEqual(config.ws.maxConnections / 2);
  });
});

describe("files that must agree", () => {
  test("every prometheus-adapter rule reads a series the gateway exports", async () => {
    const exported = new Set(
      (await createMetrics("bun", "0").registry.getMetricsAsJSON()).map((metric) => metric.name),
    );
    expect(adapterValues.rules.custom.length).toBeGreaterThan(0);
    for (const rule of adapterValues.rules.custom) {
      const series = /^([a-zA-Z_:][a-zA-Z0-9_:]*)/.exec(rule.seriesQuery)?.[1];
      expect({ series, exported: exported.has(series as string) }).toEqual({ series, exported: true });
    }
  });

  test("the adapter's gateway_connections is each pod's WebSockets plus event streams, the two that share WS_MAX_CONNECTIONS (promtool)", async () => {
    const rule = adapterValues.rules.custom.find((custom) => custom.name.as === "gateway_connections");
    expect(rule).toBeDefined();
    // As prometheus-adapter fills the template for the HPA of namespace prod.
    const query = (rule?.metricsQuery ?? "")
      .replaceAll("<<.Series>>", "gateway_ws_connections")
      .replaceAll("<<.LabelMatchers>>", 'namespace="prod",pod=~"gw-a|gw-b|gw-c"')
      .replaceAll("<<.GroupBy>>", "pod");
    // The labels of a real scrape (createMetrics: `runtime` on the WebSocket gauge only) plus the PodMonitor's.
    const pod = (name: string) => `namespace="prod", pod="${name}", job="edge-gateway"`;
    const input = [
      [`gateway_ws_connections{${pod("gw-a")}, runtime="bun"}`, 300],
      [`gateway_sse_streams{${pod("gw-a")}}`, 200],
      [`gateway_ws_connections{${pod("gw-b")}, runtime="node-uws"}`, 0],
      [`gateway_sse_streams{${pod("gw-b")}}`, 700],
      [`gateway_ws_connections{${pod("gw-c")}, runtime="bun"}`, 50],
      [`gateway_sse_streams{${pod("gw-c")}}`, 0],
      ['gateway_ws_connections{namespace="staging", pod="gw-a", job="edge-gateway", runtime="bun"}', 9999],
    ] as const;
    const tests = {
      rule_files: [],
      tests: [
        {
          interval: "15s",
          input_series: input.map(([series, value]) => ({ series, values: `${value}x4` })),
          promql_expr_test: [
            {
              expr: query,
              eval_time: "30s",
              exp_samples: [
                { labels: '{pod="gw-a"}', value: 500 },
                { labels: '{pod="gw-b"}', value: 700 },
                { labels: '{pod="gw-c"}', value: 50 },
              ],
            },
          ],
        },
      ],
    };
    const dir = mkdtempSync(join(tmpdir(), "edge-gateway-adapter-"));
    try {
      const file = join(dir, "adapter.test.yml");
      await Bun.write(file, JSON.stringify(tests)); // JSON is YAML
      const result = Bun.spawnSync(["promtool", "test", "rules", file], { stdout: "pipe", stderr: "pipe" });
      const report = `${result.stdout.toString()}${result.stderr.toString()}`;
      expect({ exit: result.exitCode, report }).toEqual({
        exit: 0,
        report: expect.stringContaining("SUCCESS"),
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("the PrometheusRule and the chart's rules are in sync with alerts.yml (bun deploy/sync-rules.ts)", async () => {
    expect(await Bun.file(join(DEPLOY, "k8s/base/prometheusrule.yaml")).text()).toBe(prometheusRule);
    expect(await Bun.file(join(CHART, "files/alerts.yml")).text()).toBe(alertsSource);
  });

  test("the docs state the ALB's deregistration delay as rendered, and it outlasts preStop, not the reverse", async () => {
    const rendered = new Set(
      renderings.flatMap(({ objects }) => {
        const attributes =
          ALB_INGRESS(objects)?.metadata.annotations["alb.ingress.kubernetes.io/target-group-attributes"];
        const seconds = /deregistration_delay\.timeout_seconds=(\d+)/.exec(attributes ?? "")?.[1];
        return seconds === undefined ? [] : [Number(seconds)];
      }),
    );
    expect(rendered.size).toBeGreaterThan(0);
    // An operator sizing preStop from a stale sentence would let the ALB cut WebSockets before the drain's reconnect.
    for (const file of [
      "deploy/README.md",
      "docs/deploy.md",
      "docs/operations.md",
      "deploy/k8s/base/deployment.yaml",
      "deploy/k8s/overlays/aws/deployment-patch.yaml",
      "deploy/k8s/overlays/aws/ingress.yaml",
    ]) {
      const prose = (await Bun.file(join(ROOT, file)).text()).replace(/\s+/g, " ");
      const stated = [...prose.matchAll(/(\d+) s deregistration delay|deregistration delay (\d+) s/g)].map(
        (match) => Number(match[1] ?? match[2]),
      );
      expect({ file, stated: stated.filter((seconds) => !rendered.has(seconds)) }).toEqual({
        file,
        stated: [],
      });
      const reversed = /preStop[^.;]*\b(?:longer than|past)\b[^.;]*deregistration delay/.exec(prose)?.[0];
      expect({ file, reversed }).toEqual({ file, reversed: undefined });
    }
  });

  test("every alert links its runbook section in docs/runbooks.md", () => {
    const anchors = new Set(
      [...runbooks.matchAll(/^#{2,3} (.+)$/gm)].map((m) =>
        (m[1] as string)
          .toLowerCase()
          .replace(/[^a-z0-9 -]/g, "")
          .replace(/ /g, "-"),
      ),
    );
    for (const rule of alerts.groups.flatMap((group) => group.rules)) {
      const anchor = /docs\/runbooks\.md#([a-z0-9-]+)$/.exec(rule.annotations.runbook_url ?? "")?.[1];
      expect({ alert: rule.alert, anchor, documented: anchors.has(anchor ?? "") }).toEqual({
        alert: rule.alert,
        anchor: rule.alert.toLowerCase(),
        documented: true,
      });
    }
  });

  test("every alert is aggregated over pods: it fires in alerts.test.yml, never with an instance or pod label", async () => {
    const unitTests = Bun.YAML.parse(await Bun.file(join(DEPLOY, "prometheus/alerts.test.yml")).text()) as {
      tests: Array<{
        alert_rule_test: Array<{ alertname: string; exp_alerts: Array<{ exp_labels: Env }> }>;
      }>;
    };
    const fired = unitTests.tests
      .flatMap((unit) => unit.alert_rule_test)
      .flatMap((check) => check.exp_alerts.map((alert) => ({ alert: check.alertname, ...alert.exp_labels })));
    for (const rule of alerts.groups.flatMap((group) => group.rules)) {
      const firings = fired.filter((firing) => firing.alert === rule.alert);
      expect({ alert: rule.alert, tested: firings.length > 0 }).toEqual({ alert: rule.alert, tested: true });
      for (const firing of firings) expect(firing).not.toContainAnyKeys(["instance", "pod"]);
      expect({ alert: rule.alert, perPod: /\$labels\.(instance|pod)/.test(JSON.stringify(rule)) }).toEqual({
        alert: rule.alert,
        perPod: false,
      });
    }
  });
});

/** `helm template` of the chart with a ci/ values file and `--set` overrides, as a values file of a user would be. */
function renderChart(values: string, ...settings: string[]) {
  return Bun.spawnSync(
    [
      helm as string,
      "template",
      "gw",
      CHART,
      "--kube-version",
      KUBE_VERSION,
      "-f",
      join(CHART, "ci", values),
      ...settings.flatMap((setting) => ["--set", setting]),
    ],
    { cwd: ROOT, stdout: "pipe", stderr: "pipe" },
  );
}

describe.skipIf(!helm)("the chart's config passthrough", () => {
  test("a setting the chart sets itself is refused in `config`, naming the value to use, and so are empty brokers; others pass through", () => {
    const render = (setting: string) => renderChart("default-values.yaml", setting);
    for (const [setting, use] of [
      ["config.DRAIN_TIMEOUT_MS=40000", "drain.timeoutMs"],
      ["config.TRUST_PROXY=2", "trustProxy"],
      ["config.KAFKA_TLS=true", "kafka.tls or kafka.msk"],
    ]) {
      const result = render(setting as string);
      expect(result.exitCode).not.toBe(0);
      expect(result.stderr.toString()).toContain(`is set by the chart: use ${use} instead`);
    }
    const embedded = render("kafka.brokers=");
    expect(embedded.exitCode).not.toBe(0);
    expect(embedded.stderr.toString()).toContain("kafka.brokers is required");
    // A bound the budget counts, raised past the pod's limit, fails the render (1 GiB of replays here).
    const replays = render("config.REPLAY_MAX_BYTES=33554432");
    expect(replays.exitCode).not.toBe(0);
    expect(replays.stderr.toString()).toContain("2 x REPLAY_MAX_BYTES x REPLAY_MAX_CONCURRENT (1024 MiB)");
    const passed = render("config.HISTORY_EVENTS_PER_CHANNEL=7");
    expect(passed.exitCode).toBe(0);
    expect(passed.stdout.toString()).toContain('HISTORY_EVENTS_PER_CHANNEL: "7"');
    // A values file of an older chart that still turns the ServiceMonitor off or on is refused, not ignored.
    const old = render("monitoring.serviceMonitor.enabled=false");
    expect(old.exitCode).not.toBe(0);
    expect(old.stderr.toString()).toContain("monitoring.serviceMonitor is now monitoring.podMonitor");
  });

  test("a name in `config` the gateway does not read is refused (a typo would leave the default in force), and WORKERS stays 1", async () => {
    // files/settings.txt is the list the chart checks against: every name src/config/config.ts reads.
    const listed = (await Bun.file(join(CHART, "files/settings.txt")).text())
      .split("\n")
      .filter((line) => line !== "" && !line.startsWith("#"));
    expect(listed).toEqual(gatewaySettings);
    const typo = renderChart("default-values.yaml", "config.WS_MAX_CONECTIONS=10000");
    expect(typo.exitCode).not.toBe(0);
    expect(typo.stderr.toString()).toContain("config.WS_MAX_CONECTIONS is not a setting the gateway reads");
    // The OpenTelemetry and AWS SDKs read their own variables.
    const sdk = renderChart(
      "default-values.yaml",
      "config.OTEL_RESOURCE_ATTRIBUTES=deployment.environment=prod",
    );
    expect(sdk.exitCode).toBe(0);
    // Each worker would hold the per-process bounds (the budget above counts one) and answer a share of the scrapes.
    const workers = renderChart("default-values.yaml", "config.WORKERS=2");
    expect(workers.exitCode).not.toBe(0);
    expect(workers.stderr.toString()).toContain("config.WORKERS must be 1");
    const one = renderChart("default-values.yaml", "config.WORKERS=1");
    expect(one.exitCode).toBe(0);
    expect(loadConfig(podEnv(documents(one.stdout.toString()))).workers).toBe(1);
  });

  test("a grace period or deregistration delay set in values that the drain does not fit in is refused", () => {
    // preStop 25 s behind the ALB + DRAIN_TIMEOUT_MS 25 s: at 50 s the kubelet kills the pod mid-drain.
    const grace = renderChart("eks-values.yaml", "drain.terminationGracePeriodSeconds=50");
    expect(grace.exitCode).not.toBe(0);
    expect(grace.stderr.toString()).toContain(
      "drain.terminationGracePeriodSeconds (50) must exceed preStop (25 s)",
    );
    expect(renderChart("eks-values.yaml", "drain.terminationGracePeriodSeconds=51").exitCode).toBe(0);
    // preStop 25 s + DRAIN_DELAY_MS 5 s + 2 s of reconnect frames: at 32 s the ALB cuts WebSockets first.
    const deregistration = renderChart("eks-values.yaml", "ingress.deregistrationDelaySeconds=32");
    expect(deregistration.exitCode).not.toBe(0);
    expect(deregistration.stderr.toString()).toContain("ingress.deregistrationDelaySeconds (32) must exceed");
    expect(renderChart("eks-values.yaml", "ingress.deregistrationDelaySeconds=33").exitCode).toBe(0);
  });

  test("on the Node targets, a memory limit or heap cap set in values that leaves the heap no room is refused", () => {
    // Old space 1024 MiB + young generation 192 MiB + queue 128 MiB fill a 1 GiB container before V8 collects.
    const small = renderChart(
      "node24-values.yaml",
      "resources.limits.memory=1Gi",
      "resources.requests.memory=1Gi",
    );
    expect(small.exitCode).not.toBe(0);
    expect(small.stderr.toString()).toContain(
      "nodeMaxOldSpaceMiB (1024) + the young generation (192 MiB) + KAFKA_QUEUE_MAX_BYTES (128 MiB) must stay under resources.limits.memory (1024 MiB)",
    );
    expect(renderChart("node24-values.yaml", "nodeMaxOldSpaceMiB=2048").exitCode).not.toBe(0);
    const fits = renderChart(
      "node24-values.yaml",
      "resources.limits.memory=1536Mi",
      "resources.requests.memory=1536Mi",
    );
    expect(fits.exitCode).toBe(0);
    // Any Kubernetes quantity: 1.5Gi is the same 1536 MiB; one the chart cannot read is named.
    expect(
      renderChart("node24-values.yaml", "resources.limits.memory=1.5Gi", "resources.requests.memory=1.5Gi")
        .exitCode,
    ).toBe(0);
    const unreadable = renderChart("node24-values.yaml", "resources.limits.memory=2e9");
    expect(unreadable.exitCode).not.toBe(0);
    expect(unreadable.stderr.toString()).toContain(
      "resources.limits.memory (2e9): write it as a number with Ki",
    );
  });

  test("on Bun, a memory limit or bound set in values that leaves the budget past 70% of the limit is refused", async () => {
    // Bun has no heap cap: the render checks the whole budget, with the figures RESULTS.md measured.
    const chart = await Bun.file(join(CHART, "templates/configmap.yaml")).text();
    expect(Number(/\$bunWorkingSetMiB := (\d+)/.exec(chart)?.[1]) * MiB).toBe(measured.workingSet.bun);
    expect(Number(/\$socketBytes := (\d+)/.exec(chart)?.[1])).toBe(measured.socketBytes);
    const small = renderChart(
      "default-values.yaml",
      "resources.limits.memory=1Gi",
      "resources.requests.memory=1Gi",
    );
    expect(small.exitCode).not.toBe(0);
    expect(small.stderr.toString()).toContain(
      "on Bun, the working set (396 MiB) + HISTORY_MAX_BYTES (256 MiB) + KAFKA_QUEUE_MAX_BYTES (128 MiB) + WS_MAX_CONNECTIONS x 4 KiB (195 MiB) + IDEMPOTENCY_MAX_BYTES (64 MiB) + 2 x REPLAY_MAX_BYTES x REPLAY_MAX_CONCURRENT (256 MiB) = 1296 MiB must fit in 70% of resources.limits.memory (1024 MiB)",
    );
    // The chart's sum is the one the ci/ renderings are held to above: 1,850 MiB is just short, 1,851 MiB fits.
    const at = (limit: string) =>
      renderChart(
        "default-values.yaml",
        `resources.limits.memory=${limit}`,
        `resources.requests.memory=${limit}`,
      );
    expect(at("1850Mi").exitCode).not.toBe(0);
    const fits = at("1851Mi");
    expect(fits.exitCode).toBe(0);
    const objects = documents(fits.stdout.toString());
    const budget = memoryBudget(loadConfig(podEnv(objects)), runtimeOf(objects));
    const total = Object.values(budget).reduce((sum, part) => sum + part, 0);
    expect(total / bytes(gatewayContainer(objects).resources.limits.memory)).toBeLessThanOrEqual(0.7);
    expect(renderChart("default-values.yaml", "config.WS_MAX_CONNECTIONS=100000").exitCode).not.toBe(0);
    expect(renderChart("default-values.yaml", "resources.limits.memory=4G").exitCode).toBe(0);
  });

  test("a scrape interval set in values that leaves GatewayDrainStuck no scrape before the drain's deadline is refused", () => {
    // Threshold 10 s + a 16 s interval > DRAIN_TIMEOUT_MS 25 s: a stuck drain can be cut before any scrape sees it past 10 s.
    const slow = renderChart("eks-values.yaml", "monitoring.podMonitor.interval=16s");
    expect(slow.exitCode).not.toBe(0);
    expect(slow.stderr.toString()).toContain(
      "monitoring.podMonitor.interval (16s) + GatewayDrainStuck's threshold (10 s) must not exceed drain.timeoutMs (25000 ms)",
    );
    expect(renderChart("eks-values.yaml", "monitoring.podMonitor.interval=1m").exitCode).not.toBe(0);
    expect(renderChart("eks-values.yaml", "monitoring.podMonitor.interval=15s").exitCode).toBe(0);
    // Below the PodMonitor's 10 s scrapeTimeout, Prometheus would refuse the scrape config.
    const fast = renderChart("eks-values.yaml", "monitoring.podMonitor.interval=5s");
    expect(fast.exitCode).not.toBe(0);
    expect(fast.stderr.toString()).toContain("must be at least the PodMonitor's scrapeTimeout (10s)");
    // A longer drain leaves room for a longer interval; without the chart's rule there is nothing to hold it to.
    expect(
      renderChart("eks-values.yaml", "monitoring.podMonitor.interval=30s", "drain.timeoutMs=40000").exitCode,
    ).toBe(0);
    expect(
      renderChart(
        "eks-values.yaml",
        "monitoring.podMonitor.interval=1m",
        "monitoring.prometheusRule.enabled=false",
      ).exitCode,
    ).toBe(0);
    const unitless = renderChart("eks-values.yaml", "monitoring.podMonitor.interval=15");
    expect(unitless.exitCode).not.toBe(0);
    expect(unitless.stderr.toString()).toContain("write it as a Prometheus duration");
  });

  test("an ALB idle timeout the gateway's WebSocket pings and stream comments do not beat is refused", () => {
    // WS_PING_INTERVAL_MS is all an idle WebSocket carries: the ALB closes connections idle past its timeout.
    const slowPings = renderChart("eks-values.yaml", "config.WS_PING_INTERVAL_MS=90000");
    expect(slowPings.exitCode).not.toBe(0);
    expect(slowPings.stderr.toString()).toContain(
      "ingress.idleTimeoutSeconds (60) must exceed WS_PING_INTERVAL_MS (90000 ms)",
    );
    expect(renderChart("eks-values.yaml", "ingress.idleTimeoutSeconds=30").exitCode).not.toBe(0);
    expect(renderChart("eks-values.yaml", "ingress.idleTimeoutSeconds=31").exitCode).toBe(0);
    const fastPings = renderChart(
      "eks-values.yaml",
      "config.WS_PING_INTERVAL_MS=5000",
      "config.SSE_HEARTBEAT_MS=5000",
      "ingress.idleTimeoutSeconds=6",
    );
    expect(fastPings.exitCode).toBe(0);
  });

  test("on Bun behind the ALB the gateway keeps idle connections past the ALB's idle timeout; on Node the setting is refused", () => {
    const keepAlive = (...settings: string[]) =>
      /HTTP_KEEP_ALIVE_SEC: "(\d+)"/.exec(renderChart("eks-values.yaml", ...settings).stdout.toString())?.[1];
    expect(keepAlive()).toBe("75");
    expect(keepAlive("ingress.idleTimeoutSeconds=120")).toBe("135");
    expect(keepAlive("config.HTTP_KEEP_ALIVE_SEC=65")).toBe("65");
    expect(keepAlive("ingress.enabled=false")).toBeUndefined();
    const tooShort = renderChart("eks-values.yaml", "config.HTTP_KEEP_ALIVE_SEC=64");
    expect(tooShort.exitCode).not.toBe(0);
    expect(tooShort.stderr.toString()).toContain(
      "HTTP_KEEP_ALIVE_SEC (64) must be at least ingress.idleTimeoutSeconds (60) + 5 on Bun",
    );
    // Past 250 s no keep-alive Bun takes (at most 255) outlasts the ALB.
    expect(renderChart("eks-values.yaml", "ingress.idleTimeoutSeconds=251").exitCode).not.toBe(0);
    const onNode = renderChart("node24-values.yaml", "config.HTTP_KEEP_ALIVE_SEC=75");
    expect(onNode.exitCode).not.toBe(0);
    expect(onNode.stderr.toString()).toContain("config.HTTP_KEEP_ALIVE_SEC does nothing on the Node targets");
  });

  test("the NetworkPolicy opens the ports the values name: brokers' (MSK's public 9198), and the JWKS, S3, schema and OTLP URLs'", () => {
    const result = renderChart(
      "eks-values.yaml",
      "kafka.brokers=b-1.edge.kafka.eu-west-1.amazonaws.com:9198\\,b-2.edge.kafka.eu-west-1.amazonaws.com:9198",
      "auth.jwksUrl=https://idp.example.com:8443/jwks.json",
      "config.SCHEMAS=https://schemas.example.com/all.json",
      "config.S3_ENDPOINT=http://minio.storage:9000",
      "config.OTEL_EXPORTER_OTLP_ENDPOINT=http://otel-collector.observability",
    );
    expect(result.exitCode).toBe(0);
    const objects = documents(result.stdout.toString());
    const named = portsNamed(loadConfig(podEnv(objects)));
    expect(named).toEqual(expect.arrayContaining([9198, 8443, 443, 9000, 80]));
    const open = openEgressPorts(only(objects, "NetworkPolicy"));
    expect(named.filter((port) => !open.has(port))).toEqual([]);
  });

  test("MSK IAM needs a pod role: without a ServiceAccount of its own the render fails; with one the Pod Identity agent is reachable", () => {
    const noRole = renderChart("eks-values.yaml", "serviceAccount.create=false");
    expect(noRole.exitCode).not.toBe(0);
    expect(noRole.stderr.toString()).toContain("kafka.msk.enabled needs serviceAccount.create");
    const agentRule = (result: ReturnType<typeof renderChart>) =>
      only(documents(result.stdout.toString()), "NetworkPolicy").spec.egress.some((rule: K8s) =>
        rule.to?.some((peer: K8s) => peer.ipBlock?.cidr === "169.254.170.23/32"),
      );
    // A Pod Identity association has no annotation to tell it from IRSA: the agent is open by default.
    expect(agentRule(renderChart("eks-values.yaml", "serviceAccount.annotations=null"))).toBe(true);
    expect(agentRule(renderChart("eks-values.yaml", "networkPolicy.podIdentityAgent=false"))).toBe(false);
    expect(agentRule(renderChart("default-values.yaml"))).toBe(false);
  });

  test("IPv6-only clusters: `host: '::'` makes the gateway listen on IPv6 too, and the agent rule opens its IPv6 address", () => {
    const objects = documents(renderChart("eks-values.yaml", "host=::").stdout.toString());
    // The kubelet probes and the Service reach the pod on its IPv6 address: 0.0.0.0 is IPv4 only.
    expect(loadConfig(podEnv(objects)).host).toBe("::");
    expect(loadConfig(podEnv(documents(renderChart("default-values.yaml").stdout.toString()))).host).toBe(
      "0.0.0.0",
    );
    const agent = only(objects, "NetworkPolicy").spec.egress.find((rule: K8s) =>
      rule.to?.some((peer: K8s) => peer.ipBlock?.cidr === "169.254.170.23/32"),
    );
    expect(agent.to.map((peer: K8s) => peer.ipBlock.cidr)).toEqual(["169.254.170.23/32", "fd00:ec2::23/128"]);
    const inConfig = renderChart("default-values.yaml", "config.HOST=::");
    expect(inConfig.exitCode).not.toBe(0);
    expect(inConfig.stderr.toString()).toContain("config.HOST is set by the chart: use host instead");
  });
});
