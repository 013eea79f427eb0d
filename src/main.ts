import { fileURLToPath } from "node:url";
import { format } from "node:util";
import packageJson from "../package.json" with { type: "json" };
import { createGateway, createSupervisorStores, holdWorkersLogFolder } from "./app.ts";
import {
  ConfigError,
  ignoredSettings,
  loadConfig,
  settingsForLog,
  withoutPasswords,
} from "./config/config.ts";
import { ignoreUnusedSignals, Lifecycle } from "./lifecycle/lifecycle.ts";
import { tuneNodeHeap } from "./lifecycle/v8-heap.ts";
import {
  ensureNothingListens,
  isWorker,
  superviseWorkers,
  tellSupervisorListening,
  WORKER_ENV,
  watchSupervisor,
} from "./lifecycle/workers.ts";
import { createLogger } from "./log/logger.ts";
import { SettingLoadError } from "./start-setting.ts";
import { selectTransport } from "./transport/select.ts";
import { fallbackRefusal } from "./transport/uws/engine.ts";

// First, before any request: V8 decides how to allocate from what it has seen.
tuneNodeHeap();
const runtime = typeof Bun !== "undefined" ? "bun" : "node-uws";

function readConfig() {
  try {
    return loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      // A JSON line for the log pipeline, as every other fatal start error; the text on stderr for whoever runs it.
      createLogger("info", { runtime, pid: process.pid }).fatal(
        { problems: error.problems, variables: error.variables },
        `invalid configuration: ${error.variables.join(", ")}`,
      );
      process.stderr.write(`${error.message}\n`);
      process.exit(1);
    }
    throw error;
  }
}

const config = readConfig();
// A URL in a setting may carry a password (SCHEMAS=https://user:key@host/…, a hosted OTLP endpoint), and
// many lines quote their URL or an error naming it (a refused Redis AUTH quotes its arguments): every line is
// written with passwords masked, whoever logs it.
const log = createLogger(config.logLevel, { runtime, pid: process.pid }, withoutPasswords);
// Libraries warn through the console (ioredis: a password Redis does not ask for, an ACL user denied INFO,
// at every connection): plain text on stderr among JSON lines, which log pipelines parse. JSON lines too.
console.warn = (...args: unknown[]) => log.warn({ via: "console" }, format(...args));
console.error = (...args: unknown[]) => log.error({ via: "console" }, format(...args));
// Process warnings (process.emitWarning: the AWS SDK's NodeVersionSupportWarning on Node 20 at the first
// s3:// read, a deprecation, MaxListenersExceededWarning) are warnings: Node's own handler printed them
// through console.error, so as `error` lines an alert on errors counts, and Bun's as plain text on stderr.
// Each is one warn line instead, with its name and code; --no-deprecation still silences deprecations.
process.removeAllListeners("warning");
process.on("warning", (warning: Error & { code?: string }) =>
  log.warn({ via: "process warning", warning: warning.name, code: warning.code }, warning.message),
);

// A stray rejection or exception is a bug to log, not a reason to drop every connection.
process.on("unhandledRejection", (reason) => log.error({ err: reason }, "unhandled rejection"));
process.on("uncaughtException", (error) => log.error({ err: error }, "uncaught exception"));
ignoreUnusedSignals(log);
// Once per gateway: the workers of a supervisor run with the settings it logged.
if (process.env[WORKER_ENV] === undefined) {
  log.info({ settings: settingsForLog(config) }, "settings in effect");
  for (const { variables, message } of ignoredSettings(config, runtime)) log.warn({ variables }, message);
}

// Named like a bad setting: the address comes from them, and an unusable one is known only when listening.
/** A start that cannot go on: its fatal JSON line, and, as for a bad setting, its text on stderr; exit 1. */
function exitCannotStart(fields: Record<string, unknown>, message: string): never {
  log.fatal(fields, message);
  // Masked as the log line is: the reason often quotes a setting's URL (SCHEMAS, TENANT_QUOTAS).
  process.stderr.write(`${withoutPasswords(message)}\n`);
  process.exit(1);
}

const cannotListen = (port: number, variables: [string, string]) => (error: unknown) => {
  const reason = error instanceof Error ? error.message : String(error);
  exitCannotStart(
    { host: config.host, port, variables },
    `cannot listen on ${config.host}:${port} (${variables.join(", ")}): ${reason}`,
  );
};

async function serve(): Promise<void> {
  const lifecycle = new Lifecycle({
    drainTimeoutMs: config.drainTimeoutMs,
    log,
    exit: (code) => process.exit(code),
  });
  lifecycle.installSignalHandlers();
  watchSupervisor(() => lifecycle.drainUnlessDraining("supervisor gone"));
  const { listen, engine } = await selectTransport();
  if (engine === "uws-js-fallback") {
    const forced = /^(1|true)$/i.test(process.env.UWS_USE_FALLBACK ?? "");
    const refusal = fallbackRefusal(process.versions.node, process.versions.modules, forced);
    if (!config.uwsAllowFallback) {
      log.fatal({ engine, node: process.versions.node }, refusal);
      process.exit(1);
    }
    log.warn({ engine, node: process.versions.node }, `UWS_ALLOW_FALLBACK=true: ${refusal}`);
  }
  const gateway = await createGateway({
    config,
    log,
    runtime,
    engine,
    version: packageJson.version,
    defaultSchemas: fileURLToPath(new URL("../schemas", import.meta.url)),
  });
  const reusePort = config.workers > 1;
  const ws = {
    maxPayloadBytes: config.ws.maxPayloadBytes,
    maxBackpressureBytes: config.ws.backpressureBytes * 2,
    idleTimeoutSec: config.ws.idleTimeoutSec,
  };
  const server = await listen(gateway.app, {
    host: config.host,
    port: config.port,
    reusePort,
    maxBodyBytes: config.maxBodyBytes,
    ws,
    httpKeepAliveSec: config.httpKeepAliveSec,
  }).catch(cannotListen(config.port, ["HOST", "PORT"]));
  // Requests may come in from here on: a signal now drains them.
  gateway.attach(server);
  lifecycle.serving(gateway.drainSteps(server), gateway.undelivered);
  // Left open through the drain so Prometheus sees it; the process exit closes it.
  const metricsServer =
    gateway.metricsApp === undefined || config.metricsPort === undefined
      ? undefined
      : await listen(gateway.metricsApp, {
          host: config.host,
          port: config.metricsPort,
          reusePort,
          maxBodyBytes: 1024,
          ws,
        }).catch(cannotListen(config.metricsPort, ["HOST", "METRICS_PORT"]));

  tellSupervisorListening();

  log.info(
    {
      host: config.host,
      port: server.port,
      ...(metricsServer ? { metricsPort: metricsServer.port } : {}),
      version: packageJson.version,
      engine,
    },
    "listening",
  );
}

// A start that fails (say, a schema or quota source that cannot be read) exits 1, like a bad setting:
// left to the uncaughtException handler it was only logged, and the process exited 0.
const cannotStart = (error: unknown) => {
  // The error itself is the cause: logged as the wrapper, its text came twice (pino appends a cause's message).
  if (error instanceof SettingLoadError)
    exitCannotStart({ variables: error.variables, err: error.cause }, error.message);
  exitCannotStart({ err: error }, `cannot start: ${error instanceof Error ? error.message : String(error)}`);
};

if (isWorker(config.workers)) await serve().catch(cannotStart);
else {
  await holdWorkersLogFolder(config).catch(cannotStart);
  // Before any worker opens the port for sharing, where another gateway's workers would let them in.
  await ensureNothingListens(config.host, config.port).catch(cannotListen(config.port, ["HOST", "PORT"]));
  if (config.metricsPort !== undefined)
    await ensureNothingListens(config.host, config.metricsPort).catch(
      cannotListen(config.metricsPort, ["HOST", "METRICS_PORT"]),
    );
  superviseWorkers({
    workers: config.workers,
    drainTimeoutMs: config.drainTimeoutMs,
    log,
    stores: createSupervisorStores(config),
  });
}
