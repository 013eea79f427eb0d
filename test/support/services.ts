const SERVICES = new URL("../../scripts/services", import.meta.url).pathname;

/** Runs `scripts/services <command>` (stop-kafka, start-redis, …) and fails the test if it fails. */
export async function servicesCommand(command: string): Promise<void> {
  const child = Bun.spawn([SERVICES, command], { stdout: "inherit", stderr: "inherit" });
  if ((await child.exited) !== 0) throw new Error(`scripts/services ${command} failed`);
}
