import { describe, expect, test } from "bun:test";
import { RUNTIMES, runUntilExit } from "./harness.ts";

describe.each(RUNTIMES)("log lines on %s", (runtime) => {
  test("a URL's password never reaches the log, whoever logs the URL", async () => {
    // A schema document without a type: the load fails, and the fatal line quotes the URL.
    const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => Response.json({}) });
    try {
      const { code, stdout } = await runUntilExit(runtime, {
        DEV_MODE: "true",
        PORT: "0",
        SCHEMAS: `http://reader:s3cret-key@127.0.0.1:${server.port}/schemas.json`,
      });
      expect(code).toBe(1);
      expect(stdout).toContain(`reader:***@127.0.0.1:${server.port}`);
      expect(stdout).not.toContain("s3cret-key");
    } finally {
      server.stop(true);
    }
  });
});
