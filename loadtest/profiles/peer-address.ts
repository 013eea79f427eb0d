// What reading the client address costs an engine per request (issue 17, target 1: the per-IP
// budget reads it on every request with limits on): the runtime's bare server of loadtest/bench
// (bare-bun.ts, bare-uws.mjs) answering post.lua's one-event POST, without and with the read
// (READ_ADDRESS=1), alternated, each saturated by wrk; the server's CPU per request (utime + stime
// from /proc).
//
//   bun loadtest/profiles/peer-address.ts bun|node [seconds] [rounds]
//   CONNECTIONS=64   wrk's connections
import { readFileSync } from "node:fs";
import { join } from "node:path";

const runtime = process.argv[2] ?? "bun";
const seconds = Number(process.argv[3] ?? 3);
const rounds = Number(process.argv[4] ?? 3);
const connections = Number(process.env.CONNECTIONS ?? 64);
const ROOT = join(import.meta.dir, "../..");
const TICKS = 100;

function cpuSeconds(pid: number): number {
  const text = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / TICKS;
}

async function wrk(port: number, duration: number): Promise<number> {
  const run = Bun.spawn(
    [
      "wrk",
      "-t1",
      `-c${connections}`,
      `-d${duration}s`,
      "-s",
      join(import.meta.dir, "../bench/post.lua"),
      `http://127.0.0.1:${port}/v1/events`,
    ],
    { stdout: "pipe", stderr: "pipe" },
  );
  const text = await new Response(run.stdout).text();
  const line = text.split("\n").find((l) => l.startsWith("wrk-result "));
  if (!line) throw new Error(`wrk failed: ${text}`);
  return (JSON.parse(line.slice("wrk-result ".length)) as { requests: number }).requests;
}

/** One server, warmed up, then measured: its CPU-µs per request. */
async function measure(readAddress: boolean, port: number): Promise<number> {
  const command =
    runtime === "bun"
      ? ["bun", join(ROOT, "loadtest/bench/bare-bun.ts")]
      : ["node", join(ROOT, "loadtest/bench/bare-uws.mjs")];
  const child = Bun.spawn(command, {
    cwd: ROOT,
    env: { ...process.env, PORT: String(port), READ_ADDRESS: readAddress ? "1" : "0" },
    stdout: "pipe",
    stderr: "inherit",
  });
  try {
    const reader = child.stdout.getReader();
    const { value } = await reader.read();
    if (!new TextDecoder().decode(value).includes('"listening"')) throw new Error("the server did not start");
    await wrk(port, 1);
    const before = cpuSeconds(child.pid);
    const requests = await wrk(port, seconds);
    return ((cpuSeconds(child.pid) - before) * 1e6) / requests;
  } finally {
    child.kill("SIGTERM");
    await child.exited;
  }
}

const without: number[] = [];
const withRead: number[] = [];
const base = 21_000 + Math.floor(Math.random() * 900);
for (let round = 0; round < rounds; round++) {
  without.push(await measure(false, base + 2 * round));
  withRead.push(await measure(true, base + 2 * round + 1));
}
const median = (values: number[]) =>
  [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] as number;
const list = (values: number[]) => values.map((v) => v.toFixed(2)).join(", ");
console.log(
  `${runtime}, CPU-µs per request, without the address read: ${list(without)} (median ${median(without).toFixed(2)})`,
);
console.log(
  `${runtime}, CPU-µs per request, with it: ${list(withRead)} (median ${median(withRead).toFixed(2)})`,
);
