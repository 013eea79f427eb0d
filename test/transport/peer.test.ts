import { expect, test } from "bun:test";
import { EnginePeer, type EngineSocket } from "../../src/transport/peer.ts";

function recordingSocket(calls: string[]): EngineSocket {
  return {
    send: (text) => {
      calls.push(`send ${text}`);
      return "sent";
    },
    subscribe: (topic) => void calls.push(`subscribe ${topic}`),
    unsubscribe: (topic) => void calls.push(`unsubscribe ${topic}`),
    bufferedAmount: () => 42,
    close: (code) => void calls.push(`close ${code}`),
  };
}

test("a peer passes calls to the engine until it is closed, then never touches the socket again", () => {
  const calls: string[] = [];
  const peer = new EnginePeer({ id: 1 }, recordingSocket(calls));
  expect(peer.send("a")).toBe("sent");
  peer.subscribe("t");
  expect(peer.bufferedAmount()).toBe(42);
  peer.close(1001, "bye");
  peer.close(1001, "again");
  expect(peer.send("b")).toBe("dropped");
  peer.unsubscribe("t");
  expect(peer.bufferedAmount()).toBe(0);
  expect(calls).toEqual(["send a", "subscribe t", "close 1001"]);
});

test("after the engine reports the close, the peer is inert", () => {
  const calls: string[] = [];
  const peer = new EnginePeer(undefined, recordingSocket(calls));
  peer.markClosed();
  expect(peer.send("x")).toBe("dropped");
  peer.close(1000, "");
  expect(calls).toEqual([]);
});
