/**
 * Resolves once `condition` holds, polling every `intervalMs`; fails naming
 * `what` after `timeoutMs`. Functional tests wait on what they need, with a
 * deadline generous enough for a loaded machine, never for a fixed time.
 */
export async function waitUntil(
  condition: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 10_000,
  intervalMs = 50,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await Bun.sleep(intervalMs);
  }
}
