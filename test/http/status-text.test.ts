import { describe, expect, test } from "bun:test";
import { connect } from "node:net";
import { HTTP_ERRORS } from "../../src/domain/errors.ts";
import { statusLine } from "../../src/http/status-text.ts";

/** Every status the gateway answers with: its errors' (but 499, never sent) and its successes'. */
const SENT = [...new Set([200, 202, 204, 431, ...Object.values(HTTP_ERRORS).map((error) => error.status)])]
  .filter((status) => status !== 499)
  .sort((a, b) => a - b);

/** The status line Bun.serve writes for `status`, read off the socket. */
function bunStatusLine(port: number, status: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1", () =>
      socket.write(`GET /${status} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`),
    );
    let head = "";
    socket.on("data", (chunk) => {
      head += chunk.toString("latin1");
    });
    socket.on("error", reject);
    socket.on("close", () => resolve(head.split("\r\n")[0] ?? ""));
  });
}

describe("status line", () => {
  test("Node's line is the one Bun.serve writes, for every status the gateway sends (Bun ignores statusText)", async () => {
    const server = Bun.serve({
      port: 0,
      hostname: "127.0.0.1",
      fetch: (request) =>
        new Response("", {
          status: Number(new URL(request.url).pathname.slice(1)),
          statusText: "ignored by Bun",
        }),
    });
    try {
      for (const status of SENT)
        expect(`${status}: ${await bunStatusLine(server.port as number, status)}`).toBe(
          `${status}: HTTP/1.1 ${statusLine(status)}`,
        );
    } finally {
      server.stop(true);
    }
  });
});
