// What the benchmark reads from /proc (Linux): a process tree's CPU time and
// peak memory, and the whole machine's busy time, so each figure belongs to
// the process measured and not to the broker or the load generator.
import { readdirSync, readFileSync } from "node:fs";

/** Clock ticks per second of utime/stime in /proc/PID/stat (USER_HZ; 100 on Linux). */
const TICKS_PER_SEC = Number(Bun.spawnSync(["getconf", "CLK_TCK"]).stdout.toString().trim()) || 100;

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined; // the process exited between listing and reading
  }
}

/** Fields of /proc/PID/stat after the command name (which may hold spaces), so index 0 is `state`. */
function statFields(pid: number): string[] | undefined {
  const text = readText(`/proc/${pid}/stat`);
  return text?.slice(text.lastIndexOf(")") + 2).split(" ");
}

/** `root` and every process below it (WORKERS > 1 starts children), from the ppid in each stat. */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync("/proc")) {
    const pid = Number(entry);
    if (!Number.isInteger(pid)) continue;
    const ppid = Number(statFields(pid)?.[1]);
    if (!Number.isInteger(ppid)) continue;
    children.set(ppid, [...(children.get(ppid) ?? []), pid]);
  }
  const tree: number[] = [];
  const pending = [root];
  while (pending.length > 0) {
    const pid = pending.pop() as number;
    tree.push(pid);
    pending.push(...(children.get(pid) ?? []));
  }
  return tree;
}

/** CPU seconds (user + system, all threads) the process has used so far. */
export function cpuSeconds(pid: number): number {
  const fields = statFields(pid);
  if (!fields) return 0;
  // utime and stime are fields 14 and 15 of stat, 11 and 12 after the name.
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SEC;
}

/** CPU seconds per thread of the process so far, user and system, by thread name (`main` for the main thread; threads of one name summed). */
export function threadCpuSeconds(pid: number): Map<string, { user: number; system: number }> {
  const threads = new Map<string, { user: number; system: number }>();
  let entries: string[] = [];
  try {
    entries = readdirSync(`/proc/${pid}/task`);
  } catch {
    return threads; // the process exited
  }
  for (const tid of entries) {
    const name = tid === String(pid) ? "main" : readText(`/proc/${pid}/task/${tid}/comm`)?.trim();
    const text = readText(`/proc/${pid}/task/${tid}/stat`);
    if (!name || !text) continue; // the thread ended between listing and reading
    const after = text.slice(text.lastIndexOf(")") + 2).split(" ");
    const sum = threads.get(name) ?? { user: 0, system: 0 };
    sum.user += Number(after[11]) / TICKS_PER_SEC;
    sum.system += Number(after[12]) / TICKS_PER_SEC;
    threads.set(name, sum);
  }
  return threads;
}

export function treeCpuSeconds(root: number): number {
  return processTree(root).reduce((sum, pid) => sum + cpuSeconds(pid), 0);
}

/** A field of /proc/PID/status in bytes (VmRSS, VmHWM), 0 when gone. */
export function statusBytes(pid: number, field: "VmRSS" | "VmHWM"): number {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(readText(`/proc/${pid}/status`) ?? "");
  return match ? Number(match[1]) * 1024 : 0;
}

/** Peak RSS of the tree: the sum of each process's own peak (an upper bound of the joint peak). */
export function treePeakRssBytes(root: number): number {
  return processTree(root).reduce((sum, pid) => sum + statusBytes(pid, "VmHWM"), 0);
}

/** The machine's CPU counters so far, in ticks: all cores together. */
export function machineTicks(): { busy: number; total: number } {
  const fields =
    (readText("/proc/stat") ?? "").split("\n")[0]?.trim().split(/\s+/).slice(1).map(Number) ?? [];
  const total = fields.slice(0, 8).reduce((sum, value) => sum + value, 0);
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0); // idle + iowait
  return { busy: total - idle, total };
}
