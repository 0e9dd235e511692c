// Fallbacks: SSE when WebSocket cannot connect, long-poll when SSE cannot either, and back
// to WebSocket once it works again.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { SignalHubClient } from "../dist/index.js";
import { WebSocket, closedPort, netShim, publish, record, startServer, subscribers, waitFor } from "./helpers.mjs";

let srv;
const clients = [];
before(async () => {
  srv = await startServer();
});
after(async () => {
  for (const c of clients) c.close();
  await srv?.stop();
});

function newClient(opts) {
  const client = new SignalHubClient({ url: srv.url, initialDelayMs: 20, maxDelayMs: 200, ...opts });
  clients.push(client);
  return client;
}

/** An EventSource that never connects. */
class BlockedEventSource {
  constructor() {
    setTimeout(() => this.onerror?.({}), 0);
  }
  addEventListener() {}
  close() {}
}

async function sendAndCollect(channel, got, ns) {
  const want = got.length + ns.length;
  for (const n of ns) await publish(srv.url, channel, { n });
  await waitFor(() => got.length >= want, `${ns.length} publications on ${channel}`);
}

test("WebSocket unreachable: falls back to SSE, which delivers publications", async () => {
  const port = await closedPort();
  const client = newClient({ WebSocket, wsUrl: `ws://127.0.0.1:${port}/ws` });
  const ev = record(client);
  const got = [];
  client.subscribe("test:sse", (p) => got.push(p));
  client.connect();
  await waitFor(() => client.state === "fallback-sse", "the SSE fallback");
  assert.equal(client.transport, "sse");
  assert.ok(ev.states.includes("reconnecting"));
  await waitFor(async () => (await subscribers(srv.url, "test:sse")) === 1, "the SSE subscription");
  await sendAndCollect("test:sse", got, [1, 2, 3]);
  assert.deepEqual(
    got.map((p) => p.data.n),
    [1, 2, 3],
  );

  // A new subscription reopens the stream; the held channel resumes from its cursor.
  const more = [];
  client.subscribe("test:sse2", (p) => more.push(p));
  await waitFor(async () => (await subscribers(srv.url, "test:sse2")) === 1, "the second SSE subscription");
  await publish(srv.url, "test:sse", { n: 4 });
  await sendAndCollect("test:sse2", more, [1]);
  await waitFor(() => got.length === 4, "the fourth publication");
  assert.deepEqual(
    got.map((p) => p.data.n),
    [1, 2, 3, 4],
  );
  client.close();
});

test("WebSocket and SSE both blocked: long-poll delivers publications", async () => {
  const shim = netShim();
  shim.blocked = true;
  const client = newClient({ WebSocket: shim.WebSocket, EventSource: BlockedEventSource });
  const got = [];
  client.subscribe("test:poll", (p) => got.push(p));
  client.connect();
  await waitFor(() => client.state === "fallback-poll", "the long-poll fallback");
  assert.equal(client.transport, "poll");
  assert.equal(shim.sockets.length, 3, "three WebSocket attempts before falling back");
  await waitFor(async () => (await subscribers(srv.url, "test:poll")) === 1, "a waiting poll");
  await sendAndCollect("test:poll", got, [1, 2, 3]);
  await sendAndCollect("test:poll", got, [4, 5, 6, 7]);
  assert.deepEqual(
    got.map((p) => p.data.n),
    [1, 2, 3, 4, 5, 6, 7],
  );
  client.close();
});

test("on a fallback, probes WebSocket and goes back to it, losing nothing", async () => {
  const shim = netShim();
  shim.blocked = true;
  const client = newClient({ WebSocket: shim.WebSocket, probeIntervalMs: 200 });
  const ev = record(client);
  const got = [];
  client.subscribe("test:probe", (p) => got.push(p));
  client.connect();
  await waitFor(() => client.state === "fallback-sse", "the SSE fallback");
  await waitFor(async () => (await subscribers(srv.url, "test:probe")) === 1, "the SSE subscription");
  await sendAndCollect("test:probe", got, [1, 2]);

  shim.blocked = false;
  await waitFor(() => client.state === "connected", "back on WebSocket");
  assert.equal(client.transport, "websocket");
  assert.deepEqual(ev.states.slice(-2), ["fallback-sse", "connected"]);
  await waitFor(async () => (await subscribers(srv.url, "test:probe")) === 1, "only the WebSocket subscription");
  await publish(srv.url, "test:probe", { n: 3 });
  await waitFor(() => got.length === 3, "a publication over WebSocket");
  assert.deepEqual(
    got.map((p) => p.data.n),
    [1, 2, 3],
  );
  client.close();
});
