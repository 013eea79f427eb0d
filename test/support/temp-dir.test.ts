import { expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

test("tempDirs: the folders a test file made are gone once its tests are done, and exist until then", async () => {
  const work = mkdtempSync(join(tmpdir(), "temp-dir-test-"));
  try {
    const file = join(work, "made.test.ts");
    writeFileSync(
      file,
      `import { expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { tempDirs } from ${JSON.stringify(join(import.meta.dir, "temp-dir.ts"))};
const tempDir = tempDirs();
const first = tempDir("temp-dir-fixture-");
test("made", () => {
  const second = tempDir("temp-dir-fixture-");
  console.log("MADE " + first + " " + second);
  expect(existsSync(first) && existsSync(second)).toBe(true);
});
test("still there for the next test", () => expect(existsSync(first)).toBe(true));
`,
    );
    const run = Bun.spawn([process.execPath, "test", file], { cwd: work, stdout: "pipe", stderr: "pipe" });
    const [out, err] = await Promise.all([new Response(run.stdout).text(), new Response(run.stderr).text()]);
    expect(await run.exited).toBe(0);
    const folders = /MADE (\S+) (\S+)/.exec(out + err)?.slice(1) ?? [];
    expect(folders).toHaveLength(2);
    for (const folder of folders) expect(existsSync(folder)).toBe(false);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});
