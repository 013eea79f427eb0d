import { describe, expect, test } from "bun:test";
import { services } from "../support/kafka.ts";

const SCRIPT = new URL("./kafka-roundtrip.mjs", import.meta.url).pathname;

describe.each([
  ["node", ["node", SCRIPT]],
  ["bun", [process.execPath, SCRIPT]],
])("@platformatic/kafka against the real broker under %s", (runtime, command) => {
  test("what is produced is read back, once each, with headers", async () => {
    const child = Bun.spawn(command as string[], {
      env: { ...process.env, KAFKA_BROKERS: services().brokers, ROUNDTRIP_COUNT: "200" },
      stdout: "pipe",
      stderr: "pipe",
    });
    const [stdout, stderr, code] = await Promise.all([
      new Response(child.stdout).text(),
      new Response(child.stderr).text(),
      child.exited,
    ]);
    expect(stderr).toBe("");
    expect(code).toBe(0);
    const { sent, received } = JSON.parse(stdout) as {
      sent: string[];
      received: Array<{ value: string; header: string }>;
    };
    expect(received.map((message) => message.value).sort()).toEqual([...sent].sort());
    expect(received.every((message) => message.header === runtime)).toBe(true);
  }, 40_000);
});
