import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { loadConfig } from "../../src/config/config.ts";
import { CorsPolicy } from "../../src/http/cors.ts";

const ROOT = new URL("../..", import.meta.url).pathname;

/** The quickstart of an example's README: the environment its `bun start` line sets, and the page it says to open. */
function quickstart(readmePath: string): { env: Record<string, string>; pageOrigin: string } {
  const readme = readFileSync(`${ROOT}${readmePath}`, "utf8");
  const commands = /```sh\n([\s\S]*?)```/.exec(readme)?.[1] ?? "";
  const start = /^((?:[A-Z_]+=\S+ +)*)bun start/m.exec(commands);
  if (!start) throw new Error(`${readmePath}: no bun start line`);
  const env = Object.fromEntries(
    (start[1] ?? "")
      .trim()
      .split(/ +/)
      .filter((assignment) => assignment !== "")
      .map((assignment) => assignment.split("=", 2) as [string, string]),
  );
  const page = /Open `(http:\/\/[^`#]+)/.exec(readme)?.[1];
  if (!page) throw new Error(`${readmePath}: no page to open`);
  return { env, pageOrigin: new URL(page).origin };
}

test("the browser example's quickstart starts a gateway that answers its page's preflight: the page POSTs with Authorization from another origin", () => {
  const { env, pageOrigin } = quickstart("examples/browser-events/README.md");
  const config = loadConfig({ ...env, DEV_MODE: "true" });
  expect(config.corsOrigins).toBeDefined();
  const cors = new CorsPolicy(config.corsOrigins ?? []);
  expect(cors.allows(pageOrigin)).toBe(true);
  const preflight = cors.preflight(["POST"], "authorization, content-type, idempotency-key");
  expect(preflight.status).toBe(204);
  expect(cors.responseHeaders(pageOrigin)["access-control-allow-origin"]).toBe(pageOrigin);
});
