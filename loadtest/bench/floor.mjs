// The floor of batched ingest (issue 17, target 3): the essential work on the
// bench's own events, nothing else. Each event of post.lua is parsed with
// JSON.parse and its `data` validated by ajv (2020-12, formats on, the options
// the gateway's registry uses) against its schema in schemas/, in one loop, on
// the runtime that runs this file (node or bun). Prints one line
// "floor-result {json}": events per CPU-second of this process, per event (the
// event's own text parsed) and per body (the 100-event array parsed at once).
//   node loadtest/bench/floor.mjs [seconds]      bun loadtest/bench/floor.mjs [seconds]
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";

const HERE = dirname(fileURLToPath(import.meta.url));
const seconds = Number(process.argv[2] ?? 2);
const BATCH = 100;

// The event wrk sends (post.lua), so the floor cannot drift from the load.
const event = /local event = '([^']+)'/.exec(readFileSync(join(HERE, "post.lua"), "utf8"))?.[1];
if (!event) throw new Error("no event in post.lua");
const type = JSON.parse(event).type;
const schema = JSON.parse(readFileSync(join(HERE, `../../schemas/${type}.json`), "utf8"));
const ajv = new (Ajv2020.default ?? Ajv2020)({ allErrors: false, strict: false });
(addFormats.default ?? addFormats)(ajv);
const validate = ajv.compile(schema);
const body = `[${Array(BATCH).fill(event).join(",")}]`;

/** Events per CPU-second of `step` (which handles `perStep` events), over `ms` after a warm-up. */
function eventsPerCpuSecond(step, perStep, ms) {
  const until = (deadline) => {
    let events = 0;
    while (performance.now() < deadline) {
      for (let i = 0; i < 100; i++) step();
      events += 100 * perStep;
    }
    return events;
  };
  until(performance.now() + Math.min(500, ms / 4));
  const cpu = process.cpuUsage();
  const events = until(performance.now() + ms);
  const used = process.cpuUsage(cpu);
  return events / ((used.user + used.system) / 1e6);
}

const perEvent = () => {
  const record = JSON.parse(event);
  if (!validate(record.data)) throw new Error("the bench event is invalid");
};
const perBody = () => {
  const records = JSON.parse(body);
  for (let i = 0; i < records.length; i++)
    if (!validate(records[i].data)) throw new Error("the bench event is invalid");
};

const half = (seconds * 1000) / 2;
const result = {
  runtime: typeof Bun === "undefined" ? `node ${process.version}` : `bun ${Bun.version}`,
  perEvent: Math.round(eventsPerCpuSecond(perEvent, 1, half)),
  perBody: Math.round(eventsPerCpuSecond(perBody, BATCH, half)),
};
console.log(`floor-result ${JSON.stringify(result)}`);
