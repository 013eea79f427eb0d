import { describe, expect, test } from "bun:test";
import { tempDirs } from "../support/temp-dir.ts";
import { TEST_SECRET } from "../support/tokens.ts";
import { RUNTIMES, runUntilExit, startGateway } from "./harness.ts";

/** Log folders of this file's gateways, removed after its tests. */
const tempDir = tempDirs();

const EMBEDDED = {
  KAFKA_BROKERS: "",
  REDIS_URL: "",
  LOCAL_LOG_DIR: tempDir("engine-e2e-"),
};

describe.each(RUNTIMES)("the engine on %s", (runtime) => {
  test("is named in the listening log line and in gateway_engine_info", async () => {
    const gateway = await startGateway(runtime, EMBEDDED);
    try {
      const engine = runtime === "bun" ? "bun" : "uws-native";
      expect(gateway.logs.find((entry) => entry.msg === "listening")?.engine).toBe(engine);
      const metrics = await (await fetch(`${gateway.url}/metrics`)).text();
      expect(metrics).toContain(`gateway_engine_info{engine="${engine}"} 1`);
    } finally {
      await gateway.stop("SIGKILL");
    }
  });
});

test("on Node, uWebSockets.js's JS fallback is refused at start, naming the supported Node versions", async () => {
  // UWS_USE_FALLBACK is the package's own switch: it loads the fallback that a Node without a native build gets.
  const { code, stdout } = await runUntilExit("node", {
    ...EMBEDDED,
    UWS_USE_FALLBACK: "true",
    JWT_SECRET: TEST_SECRET,
    HOST: "127.0.0.1",
    PORT: "0",
  });
  expect(code).toBe(1);
  const fatal = stdout
    .split("\n")
    .filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line) as Record<string, unknown>)
    .find((entry) => entry.level === "fatal");
  expect(fatal?.engine).toBe("uws-js-fallback");
  expect(String(fatal?.msg)).toContain("Node 20 (>= 20.19.4)");
  expect(String(fatal?.msg)).toContain("UWS_ALLOW_FALLBACK=true");
});
