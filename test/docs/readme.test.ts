import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";

const ROOT = new URL("../..", import.meta.url).pathname;
const readme = readFileSync(`${ROOT}README.md`, "utf8");
/** What a reader sees before scrolling. */
const firstScreen = readme.split("\n").slice(0, 50).join("\n");

test("the README's first screen: what it is, the two commands, a curl and a browser snippet, prerequisites, links", () => {
  const intro = readme.split("\n\n")[1] ?? "";
  expect(intro.split("\n").length).toBeLessThanOrEqual(3);
  const firstBlock = /```sh\n([\s\S]*?)```/.exec(readme)?.[1] ?? "";
  expect(firstBlock).toContain("bun install && bun start");
  expect(firstBlock).toContain("npm install && npm test");
  expect(firstScreen).toContain("curl ");
  expect(firstScreen).toMatch(/new (WebSocket|EventSource)\(/);
  for (const prerequisite of ["apt-get", "Go", "Java", "Maven", "Python 3", "venv"])
    expect(firstScreen).toContain(prerequisite);
  expect(firstScreen).toContain("(docs/README.md)");
});

test("the test command the README gives is the one CI runs, and package.json's test script is the whole suite", () => {
  expect(readFileSync(`${ROOT}.ci/run`, "utf8")).toContain("\nnpm install && npm test\n");
  const scripts = JSON.parse(readFileSync(`${ROOT}package.json`, "utf8")).scripts as Record<string, string>;
  expect(scripts.test).toBe("bash scripts/test-all");
  expect(scripts.start).toContain("DEV_MODE=true");
});
