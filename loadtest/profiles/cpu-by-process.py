#!/usr/bin/env python3
# CPU-seconds by kind of process (gateways, Kafka JVMs, test runners, kernel threads...) over a while,
# sampled from /proc once a second: each process's utime + stime, charged to a kind by its command line
# (kernel threads have none). A process seen first mid-life is charged all it used; one that exits
# between samples loses at most its last second. Writes the totals as JSON every second.
#   python3 loadtest/profiles/cpu-by-process.py OUT.json SECONDS &   # then run the test command
import json, os, sys, time
from collections import Counter

HZ = os.sysconf("SC_CLK_TCK")


def kind(command: str) -> str:
    first = command.split(" ")[0] if command else ""
    if "dist/main.js" in command: return "gateway node"
    if "src/main.ts" in command: return "gateway bun"
    if "kafka.Kafka" in command or os.path.basename(first) == "java": return "kafka (java)"
    if "redis-server" in command: return "redis"
    if " test" in command and "bun" in first: return "bun test runner"
    if "schemathesis" in command or "python" in first: return "python (schemathesis, moto)"
    for name in ("k6", "chrom", "wrk", "kcat", "otelcol"):
        if name in os.path.basename(first): return name
    return "other: " + (os.path.basename(first) or "kernel threads and zombies")


out, seconds = sys.argv[1], float(sys.argv[2])
last, totals, seen = {}, Counter(), Counter()
started = time.time()
while time.time() - started < seconds:
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f: stat = f.read()
            with open(f"/proc/{pid}/cmdline", "rb") as f: command = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        ticks, key = int(fields[11]) + int(fields[12]), (pid, fields[19])
        if key not in last: seen[kind(command)] += 1
        totals[kind(command)] += ticks - last.get(key, 0)
        last[key] = ticks
    time.sleep(1)
    with open(out, "w") as f:
        json.dump({"elapsed_s": round(time.time() - started), "cpu_s": {k: v / HZ for k, v in totals.most_common()}, "processes": dict(seen)}, f, indent=1)
