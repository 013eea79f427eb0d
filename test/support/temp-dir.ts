import { afterAll } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * Call at a test file's top level: returns a maker of new folders under the
 * system's temporary directory, all removed once the file's tests are done
 * (and its gateways stopped). For folders a file hands to processes it starts
 * (a gateway's LOCAL_LOG_DIR), which no single test owns: left behind, each
 * run of the suite added a few dozen to /tmp.
 */
export function tempDirs(): (prefix: string) => string {
  const made: string[] = [];
  afterAll(() => {
    for (const folder of made.splice(0)) rmSync(folder, { recursive: true, force: true });
  });
  return (prefix) => {
    const folder = mkdtempSync(join(tmpdir(), prefix));
    made.push(folder);
    return folder;
  };
}
