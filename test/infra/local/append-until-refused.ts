/**
 * Run under a file-size limit by log-writer.test.ts: appends batches of ten
 * records to the local log until a write is refused, then one small batch
 * that fits again, and prints what happened as JSON.
 */
import { LocalLogWriter } from "../../../src/infra/local/log-writer.ts";

const dir = process.argv[2] as string;
const writer = new LocalLogWriter({ dir, rotateBytes: 1 << 30 });
await writer.connect();
const acknowledged: number[] = [];
let refusal: { name: string; code: string } | undefined;
for (let batch = 0; !refusal && batch < 1000; batch++) {
  const records = Array.from({ length: 10 }, (_, i) => batch * 10 + i);
  try {
    await writer.write(
      records.map((n) => ({
        topic: "events",
        key: "k",
        headers: {},
        value: JSON.stringify({ n, pad: "x".repeat(90) }),
      })),
    );
    acknowledged.push(...records);
  } catch (error) {
    refusal = { name: (error as Error).name, code: (error as { sinkCode: string }).sinkCode };
  }
}
// After a refusal the file is back at its last whole line: a batch that fits is appended cleanly.
let small = false;
try {
  await writer.write([{ topic: "events", key: "k", headers: {}, value: "{}" }]);
  small = true;
} catch {}
await writer.close();
console.log(JSON.stringify({ acknowledged, refusal, small }));
