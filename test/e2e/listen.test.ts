import { describe, expect, test } from "bun:test";
import { TEST_SECRET } from "../support/tokens.ts";
import { freePort, RUNTIMES, runUntilExit, startGateway } from "./harness.ts";

describe.each(RUNTIMES)("listening on %s", (runtime) => {
  test("a second gateway on a port in use exits 1 and names the port", async () => {
    const port = String(await freePort());
    const first = await startGateway(runtime, { JWT_SECRET: TEST_SECRET, PORT: port });
    try {
      const second = await runUntilExit(
        runtime,
        { JWT_SECRET: TEST_SECRET, HOST: "127.0.0.1", PORT: port },
        10_000,
      );
      expect(second.code).toBe(1);
      const fatal = second.stdout
        .split("\n")
        .filter((line) => line.startsWith("{"))
        .map((line) => JSON.parse(line) as Record<string, unknown>)
        .find((line) => line.level === "fatal");
      expect(String(fatal?.msg)).toContain(`127.0.0.1:${port}`);
      // Named like a bad setting: the address is theirs.
      expect(fatal?.variables).toEqual(["HOST", "PORT"]);
      expect((await fetch(`${first.url}/health/live`)).status).toBe(200);
    } finally {
      await first.stop("SIGKILL");
    }
  });
});
