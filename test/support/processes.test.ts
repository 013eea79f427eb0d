import { expect, test } from "bun:test";
import { isAlive, killGroup, leftovers, RUN_ENV, spawnGroup } from "./processes.ts";

test("killGroup ends the child, its group, and a grandchild that left for a session of its own", async () => {
  // The grandchild does what a WORKERS supervisor's worker does: leaves the group (setsid) and outlives its parent.
  const child = spawnGroup(["bash", "-c", "sleep 300 & setsid sleep 301 & echo $!; wait"], {
    stdout: "pipe",
    stderr: "inherit",
  });
  const reader = child.stdout.getReader();
  const detached = Number(new TextDecoder().decode((await reader.read()).value).trim());
  reader.releaseLock();
  expect(isAlive(detached)).toBe(true);
  await killGroup(child);
  expect(isAlive(child.pid)).toBe(false);
  // Reparented to init and reaped by it: gone, or at most a zombie for a moment.
  const deadline = Date.now() + 5000;
  while (isAlive(detached) && (await Bun.file(`/proc/${detached}/cmdline`).text()) !== "") {
    if (Date.now() > deadline) throw new Error(`pid ${detached} survived`);
    await Bun.sleep(20);
  }
});

test("leftovers finds a process of the run by its marker, and nothing once it is gone", async () => {
  const run = process.env[RUN_ENV] ?? "adhoc";
  const child = spawnGroup(["sleep", "300"], { stdout: "ignore" });
  // Until the child has exec'd, /proc shows the parent's environment, without the marker: a loaded machine shows that moment.
  const deadline = Date.now() + 5000;
  while (!leftovers(run).some((found) => found.pid === child.pid) && Date.now() < deadline)
    await Bun.sleep(10);
  expect(leftovers(run).map((found) => found.pid)).toContain(child.pid);
  await killGroup(child);
  expect(leftovers(run).map((found) => found.pid)).not.toContain(child.pid);
});
