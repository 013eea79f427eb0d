/**
 * Run under a file-size limit of 4096 bytes by log-writer.test.ts, on a folder
 * whose newest file is already at the limit (as a previous run left it):
 * appends batches of ten records, then one batch larger than the limit, then
 * a small one, and prints what was acknowledged, refused and warned as JSON.
 */
import { LocalLogWriter } from "../../../src/infra/local/log-writer.ts";
import type { Logger } from "../../../src/log/logger.ts";

const dir = process.argv[2] as string;
const warnings: string[] = [];
const log = { warn: (_fields: unknown, message: string) => warnings.push(message) } as unknown as Logger;
const writer = new LocalLogWriter({ dir, rotateBytes: 1 << 30 }, log);
await writer.connect();
const acknowledged: number[] = [];
const refused: { name: string; code: string; first: number }[] = [];
let next = 0;
async function append(count: number): Promise<void> {
  const records = Array.from({ length: count }, () => next++);
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
    refused.push({
      name: (error as Error).name,
      code: (error as { sinkCode: string }).sinkCode,
      first: records[0] as number,
    });
  }
}
for (let batch = 0; batch < 20; batch++) await append(10);
// About 7.5 KB: more than a whole file may hold, refused in the next file too.
await append(50);
await append(1);
await writer.close();
console.log(JSON.stringify({ acknowledged, refused, warnings }));
