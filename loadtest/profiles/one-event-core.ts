// The one-event request path in process, without sockets: the gateway made as main.ts makes it
// (embedded sink in a temporary LOCAL_LOG_DIR, rate limits off), its app called with post.lua's
// request, CONNECTIONS requests at a time, for an A/B of the core (router, auth, ingest, queue,
// local log) that the machine's scheduling noise moves less than a wrk run. Prints the process's
// CPU per request (every thread: the log's writes on the runtime's I/O threads too).
//
//   bun loadtest/profiles/one-event-core.ts [seconds] [rounds]
//   bun build loadtest/profiles/one-event-core.ts --target=node --packages=external --outdir=dist/core \
//     && node --max-semi-space-size=64 dist/core/one-event-core.js [seconds] [rounds]
// (Node with the young generation the container and `npm run start:node` give it: without the flag
// the collector takes ~25% of the samples here instead of 5-8%, and the core costs ~2x as much.)
//   ACK=none   ?ack=none instead of the default acknowledgement
//   CONNECTIONS=256   requests in flight (default 256, as `bun run bench`'s one-event cases)
//   CORE_REDIS_URL=redis://host:port   rate limits on, leased from that Redis (budgets of 10^8/s: nothing refused)
// For an A/B of two checkouts under the same load, core-ab.ts runs both in one process.
import { oneEventCore } from "./one-event-app.ts";

const seconds = Number(process.argv[2] ?? 3);
const rounds = Number(process.argv[3] ?? 3);
const core = await oneEventCore({
  connections: Number(process.env.CONNECTIONS ?? 256),
  ack: process.env.ACK,
  redisUrl: process.env.CORE_REDIS_URL,
});
await core.round(1); // warm-up (and, with limits on, Redis ready and the first leases)
for (let index = 0; index < rounds; index++) {
  const { requests, cpuUs } = await core.round(seconds);
  console.log(
    `core ${core.runtime} ack=${process.env.ACK === "none" ? "none" : "default"}: ${Math.round(requests / seconds)} req/s, ${(cpuUs / requests).toFixed(2)} CPU-us/request`,
  );
}
core.close();
process.exit(0);
