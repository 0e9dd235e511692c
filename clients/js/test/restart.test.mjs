// Server killed and restarted on the same port with the same SQLite file: the channel's
// in-memory history and epoch are new, so the client resyncs from HTTP history.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { SignalHubClient } from "../dist/index.js";
import { netShim, postSignal, publish, record, startServer, subscribers, waitFor } from "./helpers.mjs";

const db = path.join(os.tmpdir(), `signalhub-js-${process.pid}-${Date.now()}.db`);
const servers = [];
after(async () => {
  for (const s of servers) await s.stop();
  for (const suffix of ["", "-wal", "-shm"]) fs.rmSync(db + suffix, { force: true });
});

test("after a SIGKILL and restart, a new epoch is resynced from history: each signal once", async () => {
  const store = `sqlite:${db}`;
  let srv = await startServer({ store });
  servers.push(srv);
  const shim = netShim();
  const client = new SignalHubClient({ url: srv.url, WebSocket: shim.WebSocket, initialDelayMs: 50, maxDelayMs: 300 });
  const ev = record(client);
  const got = [];
  client.subscribe("signals", (p) => got.push(p));
  client.connect();
  await waitFor(async () => (await subscribers(srv.url, "signals")) === 1, "the server subscription");
  await postSignal(srv.url, { signal_id: "restart-before" });
  await waitFor(() => got.length === 1, "the first signal");
  const firstEpoch = got[0].epoch;

  shim.hold(); // the client's reconnection waits until the signal below is published
  await srv.stop("SIGKILL");
  await waitFor(() => client.state === "reconnecting", "reconnecting");
  srv = await startServer({ port: srv.port, store });
  servers.push(srv);
  await postSignal(srv.url, { signal_id: "restart-after" }); // published before the client is back
  shim.release();
  await waitFor(() => got.length === 2, "the signal published while the client was away");
  assert.equal(client.state, "connected");

  await postSignal(srv.url, { signal_id: "restart-live" });
  await waitFor(() => got.length === 3, "a live signal");
  assert.deepEqual(
    got.map((p) => p.data.signal_id),
    ["restart-before", "restart-after", "restart-live"],
  );
  assert.notEqual(got[1].epoch, firstEpoch);
  assert.deepEqual(
    got.slice(1).map((p) => p.seq),
    [1, 2],
  );
  const resync = ev.resync.find((r) => r.channel === "signals");
  assert.ok(resync, "a resync event");
  assert.equal(resync.epoch, got[1].epoch);
  assert.deepEqual(
    resync.publications.map((p) => p.data.signal_id),
    ["restart-after"],
  );
  const subscribed = shim.sockets.at(-1).frames.find((f) => f.type === "subscribed");
  assert.equal(subscribed.channels[0].recovered, false);
  client.close();
});

test("a server shutting down (close 1001) is reconnected at once, without backoff", async () => {
  let srv = await startServer();
  servers.push(srv);
  const shim = netShim();
  // An hour of backoff: only the immediate reconnection after 1001 can be seen here.
  const client = new SignalHubClient({ url: srv.url, WebSocket: shim.WebSocket, initialDelayMs: 3_600_000 });
  const got = [];
  client.subscribe("test:1001", (p) => got.push(p));
  client.connect();
  await waitFor(async () => (await subscribers(srv.url, "test:1001")) === 1, "the server subscription");

  shim.hold();
  await srv.stop("SIGTERM");
  await waitFor(() => shim.closes.length === 1, "the close");
  assert.deepEqual(shim.closes, [1001]);
  await waitFor(() => shim.sockets.length === 2, "an immediate second attempt");
  srv = await startServer({ port: srv.port });
  servers.push(srv);
  shim.release();
  await waitFor(() => client.state === "connected", "connected to the new server");
  await publish(srv.url, "test:1001", { n: 1 });
  await waitFor(() => got.length === 1, "a publication from the new server");
  client.close();
});
