// WebSocket: subscribe, receive, locked stubs, progressive auth, errors, duplicates, recovery.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { SignalHubClient } from "../dist/index.js";
import {
  WebSocket,
  mintToken,
  netShim,
  postSignal,
  publish,
  record,
  startServer,
  subscribers,
  waitFor,
} from "./helpers.mjs";

let srv;
const clients = [];
before(async () => {
  srv = await startServer();
});
after(async () => {
  for (const c of clients) c.close();
  await srv?.stop();
});

function newClient(opts = {}) {
  const client = new SignalHubClient({ url: srv.url, WebSocket, initialDelayMs: 50, maxDelayMs: 300, ...opts });
  clients.push(client);
  return client;
}

/** Publishes a sentinel and waits for it, so everything published before it has arrived. */
async function settle(channel, got) {
  const { id } = await publish(srv.url, channel, { sentinel: true });
  await waitFor(() => got.some((p) => p.id === id), `sentinel on ${channel}`);
  return got.filter((p) => !p.data?.sentinel);
}

test("subscribe and receive a publication published over HTTP", async () => {
  const client = newClient();
  const ev = record(client);
  const got = [];
  client.subscribe("test:basic", (p) => got.push(p)); // asked before connecting: sent on connect
  client.connect();
  await waitFor(async () => (await subscribers(srv.url, "test:basic")) === 1, "the server subscription");
  assert.equal(client.state, "connected");
  assert.equal(client.transport, "websocket");
  assert.equal(client.tier, "free");
  assert.deepEqual(ev.states, ["connecting", "connected"]);
  assert.equal(ev.welcome[0].auth, "anonymous");

  const res = await publish(srv.url, "test:basic", { hello: "world" });
  await waitFor(() => got.length === 1, "the publication");
  assert.equal(got[0].id, res.id);
  assert.equal(got[0].type, "note");
  assert.equal(got[0].channel, "test:basic");
  assert.equal(got[0].seq, res.seq);
  assert.deepEqual(got[0].data, { hello: "world" });
  client.close();
  assert.equal(client.state, "closed");
});

test("locked stubs reach the callback; setToken upgrades the tier with an auth frame", async () => {
  const client = newClient();
  const ev = record(client);
  const got = [];
  client.subscribe("signals", (p) => got.push(p));
  client.connect();
  await waitFor(() => ev.welcome.length === 1, "welcome");
  await waitFor(async () => (await subscribers(srv.url, "signals")) >= 1, "the server subscription");

  await postSignal(srv.url, { signal_id: "lock-1", confidence_score: 0.85 });
  await waitFor(() => got.length === 1, "the stub");
  assert.equal(got[0].type, "locked");
  assert.equal(got[0].tier, "premium");
  assert.equal(got[0].kind, "signal");
  assert.equal(got[0].data, undefined);

  await client.setToken(await mintToken(srv.url, "u-premium", "premium"));
  assert.equal(client.tier, "premium");
  assert.equal(client.user, "u-premium");
  assert.deepEqual(ev.authenticated.at(-1), { auth: "session", tier: "premium", user: "u-premium" });

  await postSignal(srv.url, { signal_id: "lock-2", confidence_score: 0.85 });
  await waitFor(() => got.length === 2, "the signal");
  assert.equal(got[1].type, "signal");
  assert.equal(got[1].data.signal_id, "lock-2");
  assert.equal(got[1].seq, got[0].seq + 1);
  assert.equal(ev.welcome.length, 1, "no reconnection for an auth frame");
  client.close();
});

test("server error frames are emitted, with the channel", async () => {
  const client = newClient();
  const ev = record(client);
  client.subscribe("whale", () => {});
  client.subscribe("bad channel!", () => {});
  client.connect();
  await waitFor(() => ev.errors.length === 2, "two errors");
  const byChannel = Object.fromEntries(ev.errors.map((e) => [e.channel, e.code]));
  assert.deepEqual(byChannel, { whale: "forbidden", "bad channel!": "bad_channel" });
  assert.equal(client.state, "connected");
  client.close();
});

test("duplicates are dropped by (channel, seq) and by data.signal_id", async () => {
  const shim = netShim();
  shim.duplicate = true; // every publication frame arrives twice
  const client = newClient({ WebSocket: shim.WebSocket });
  const got = [];
  client.subscribe("test:dup", (p) => got.push(p));
  client.connect();
  await waitFor(async () => (await subscribers(srv.url, "test:dup")) === 1, "the server subscription");
  for (const n of [1, 2, 3]) await publish(srv.url, "test:dup", { n });
  await publish(srv.url, "test:dup", { n: 4, signal_id: "dup-sig" });
  await publish(srv.url, "test:dup", { n: 5, signal_id: "dup-sig" }); // same signal again
  const seen = await settle("test:dup", got);
  assert.deepEqual(
    seen.map((p) => p.data.n),
    [1, 2, 3, 4],
  );
  const frames = shim.sockets[0].frames.filter((f) => f.channel === "test:dup" && f.seq);
  assert.ok(frames.length >= 6, "the server did send them all");
  client.close();
});

test("since recovery after a short drop delivers the missed publications once, in order", async () => {
  const shim = netShim();
  const client = newClient({ WebSocket: shim.WebSocket });
  const ev = record(client);
  const got = [];
  client.subscribe("test:recover", (p) => got.push(p));
  client.connect();
  await waitFor(async () => (await subscribers(srv.url, "test:recover")) === 1, "the server subscription");
  await publish(srv.url, "test:recover", { n: 1 });
  await waitFor(() => got.length === 1, "the first publication");

  shim.hold(); // the reconnection waits until the test has published
  shim.sockets[0].terminate();
  await waitFor(() => client.state === "reconnecting", "reconnecting");
  for (const n of [2, 3, 4]) await publish(srv.url, "test:recover", { n });
  shim.release();
  await waitFor(() => client.state === "connected", "connected again");

  const seen = await settle("test:recover", got);
  assert.deepEqual(
    seen.map((p) => p.data.n),
    [1, 2, 3, 4],
  );
  assert.deepEqual(
    seen.map((p) => p.seq),
    [1, 2, 3, 4],
  );
  const subscribed = shim.sockets.at(-1).frames.find((f) => f.type === "subscribed");
  assert.deepEqual(subscribed.channels[0], {
    channel: "test:recover",
    epoch: got[0].epoch,
    seq: 4,
    recovered: true,
  });
  assert.equal(ev.resync.length, 0, "recovered over the WebSocket, no HTTP resync");
  client.close();
});

test("subscribe and unsubscribe while offline are replayed on connect", async () => {
  const shim = netShim();
  const client = newClient({ WebSocket: shim.WebSocket });
  const got = { a: [], b: [], c: [] };
  client.subscribe("test:off-a", (p) => got.a.push(p));
  const b = client.subscribe("test:off-b", (p) => got.b.push(p));
  client.connect();
  await waitFor(async () => (await subscribers(srv.url, "test:off-b")) === 1, "the server subscriptions");

  shim.hold();
  shim.sockets[0].terminate();
  await waitFor(() => client.state === "reconnecting", "reconnecting");
  b.unsubscribe();
  client.subscribe("test:off-c", (p) => got.c.push(p));
  shim.release();
  await waitFor(() => client.state === "connected", "connected again");
  await waitFor(async () => (await subscribers(srv.url, "test:off-c")) === 1, "c subscribed");
  assert.equal(await subscribers(srv.url, "test:off-a"), 1);
  assert.equal(await subscribers(srv.url, "test:off-b"), 0);

  await publish(srv.url, "test:off-b", { n: 1 });
  await publish(srv.url, "test:off-c", { n: 1 });
  await settle("test:off-c", got.c);
  assert.equal(got.c.length, 2);
  assert.equal(got.b.length, 0);
  client.close();
});
