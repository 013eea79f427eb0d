#!/usr/bin/env bash
# What a scripts/services broker costs with given extra JVM flags: CPU to ready, over 30 s idle, and over
# three e2e files run against it (and their wall time). Uses a state folder of its own, removed after.
#   loadtest/profiles/broker-jvm.sh default false
#   loadtest/profiles/broker-jvm.sh lean true        # KAFKA_LEAN_JVM=true
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PWD/node_modules/.bin:${EDGE_GATEWAY_CACHE:-$HOME/.cache/edge-gateway}/bin:$PATH"
export EDGE_GATEWAY_STATE=/tmp/broker-jvm-$$ KAFKA_LEAN_JVM="$2"
trap 'scripts/services down >/dev/null 2>&1 || true' EXIT
cpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$(cat "$EDGE_GATEWAY_STATE/kafka.pid")/stat"; }
began=$(date +%s%N)
scripts/services up >/dev/null 2>&1
ready=$(date +%s%N)
at_ready=$(cpu)
sleep 30
after_idle=$(cpu)
eval "$(scripts/services env)"
bun run build >/dev/null 2>&1
work_began=$(date +%s%N)
bun test --timeout 60000 test/e2e/ingest.test.ts test/e2e/fanout.test.ts test/e2e/resume.test.ts >"/tmp/broker-jvm-$1.log" 2>&1 || echo "tests failed: /tmp/broker-jvm-$1.log"
work_ended=$(date +%s%N)
after_work=$(cpu)
echo "$1: ready in $(((ready - began) / 1000000)) ms, CPU to ready $at_ready s, idle 30 s +$(echo "$after_idle - $at_ready" | bc) s," \
  "three files $(((work_ended - work_began) / 1000000)) ms +$(echo "$after_work - $after_idle" | bc) s"
