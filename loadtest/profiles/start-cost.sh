#!/usr/bin/env bash
# What one gateway start costs: wall time from spawn to its "listening" line, and the CPU its process
# used by then (utime + stime from /proc), embedded default, N starts.
#   loadtest/profiles/start-cost.sh 3 node --enable-source-maps --max-semi-space-size=64 dist/main.js
#   loadtest/profiles/start-cost.sh 3 bun src/main.ts
set -euo pipefail
cd "$(dirname "$0")/../.."
starts="$1"
shift
for _ in $(seq "$starts"); do
  folder="$(mktemp -d)"
  began="$(date +%s%N)"
  DEV_MODE=true PORT=0 HOST=127.0.0.1 LOCAL_LOG_DIR="$folder" "$@" >"$folder/out" 2>&1 &
  pid=$!
  until grep -q '"listening"' "$folder/out" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || { cat "$folder/out"; exit 1; }
    sleep 0.005
  done
  listening="$(date +%s%N)"
  read -r user system < <(awk '{print $14, $15}' "/proc/$pid/stat")
  echo "$(((listening - began) / 1000000)) ms wall, $(((user + system) * 1000 / $(getconf CLK_TCK))) ms CPU"
  kill -KILL "$pid"
  wait "$pid" 2>/dev/null || true
  rm -rf "$folder"
done
