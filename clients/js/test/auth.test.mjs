// Terminal closes and token expiry: 1008 stops, 4001 asks getToken for a new token.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { SignalHubClient } from "../dist/index.js";
import { ADMIN_KEY, api, mintToken, netShim, publish, record, sleep, startServer, subscribers, waitFor } from "./helpers.mjs";

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
  const client = new SignalHubClient({ url: srv.url, initialDelayMs: 50, maxDelayMs: 300, ...opts });
  clients.push(client);
  return client;
}

test("an admin disconnect (1008) is terminal: closed, no reconnection attempts", async () => {
  const shim = netShim();
  const token = await mintToken(srv.url, "u-term");
  const client = newClient({ WebSocket: shim.WebSocket, token });
  const ev = record(client);
  client.subscribe("test:term", () => {});
  client.connect();
  await waitFor(() => ev.authenticated.length === 1, "authenticated");
  await waitFor(async () => (await subscribers(srv.url, "test:term")) === 1, "the server subscription");

  const res = await api(srv.url, "POST", "/api/v1/users/u-term/disconnect", undefined, ADMIN_KEY);
  assert.equal(res.disconnected, 1);
  await waitFor(() => client.state === "closed", "closed");
  assert.deepEqual(shim.closes, [1008]);
  assert.equal(ev.errors.at(-1).code, "disconnected");
  const sockets = shim.sockets.length;
  await sleep(3000); // observe: nothing may try to connect
  assert.equal(shim.sockets.length, sockets);
  assert.equal(client.state, "closed");
  assert.equal(ev.states.at(-1), "closed");
});

test("getToken is called again before exp and the new token goes in an auth frame", async () => {
  const shim = netShim();
  const short = await mintToken(srv.url, "u-refresh", "free", 4);
  const long = await mintToken(srv.url, "u-refresh", "premium", 3600);
  let calls = 0;
  const client = newClient({ WebSocket: shim.WebSocket, getToken: () => (++calls === 1 ? short : long) });
  const ev = record(client);
  client.connect();
  await waitFor(() => ev.authenticated.length === 1, "authenticated");
  assert.equal(client.tier, "free");
  // 30 s before exp, or at half the remaining life of a token shorter than that.
  await waitFor(() => ev.authenticated.length === 2, "authenticated with the refreshed token");
  assert.equal(calls, 2);
  assert.equal(client.tier, "premium");
  assert.equal(shim.sockets.length, 1, "the same connection");
  await sleep(2500); // past the first token's exp: the connection stays
  assert.deepEqual(shim.closes, []);
  assert.equal(client.state, "connected");
  client.close();
});

test("close 4001 calls getToken again and reconnects with the new token, recovering with since", async () => {
  const shim = netShim();
  const short = await mintToken(srv.url, "u-exp", "free", 3);
  const long = await mintToken(srv.url, "u-exp", "free", 3600);
  const calls = [];
  // Keeps giving the short token until the server has closed with 4001, then a fresh one.
  const getToken = async () => {
    const after4001 = shim.closes.includes(4001);
    calls.push(after4001);
    return after4001 ? long : short;
  };
  const client = newClient({ WebSocket: shim.WebSocket, getToken });
  const ev = record(client);
  const got = [];
  client.subscribe("test:exp", (p) => got.push(p));
  client.connect();
  await waitFor(() => ev.authenticated.length === 1, "authenticated");
  assert.equal(client.user, "u-exp");
  await waitFor(async () => (await subscribers(srv.url, "test:exp")) === 1, "the server subscription");
  await publish(srv.url, "test:exp", { n: 1 });
  await waitFor(() => got.length === 1, "the first publication");

  shim.hold(); // the next connection waits until the test has published n:2
  await waitFor(() => shim.closes.includes(4001), "the server's 4001 close at exp");
  await publish(srv.url, "test:exp", { n: 2 });
  await waitFor(() => calls.includes(true), "getToken called after the 4001");
  shim.release();
  await waitFor(() => ev.authenticated.length === 2 && client.state === "connected", "authenticated again");
  assert.equal(client.user, "u-exp");
  assert.equal(shim.sockets.length, 2);
  await publish(srv.url, "test:exp", { n: 3 });
  await waitFor(() => got.length === 3, "a publication on the new connection");
  assert.deepEqual(
    got.map((p) => p.data.n),
    [1, 2, 3],
  );
  assert.ok(!ev.errors.some((e) => e.code === "token_expired"));
  client.close();
});

test("close 4001 without a new token from getToken is terminal", async () => {
  const shim = netShim();
  const short = await mintToken(srv.url, "u-exp2", "free", 2);
  let calls = 0;
  const client = newClient({
    WebSocket: shim.WebSocket,
    getToken: () => {
      calls++;
      return short;
    },
  });
  const ev = record(client);
  client.subscribe("test:exp2", () => {});
  client.connect();
  await waitFor(() => ev.authenticated.length === 1, "authenticated");
  await waitFor(() => client.state === "closed", "closed after the token expired");
  assert.deepEqual(shim.closes, [4001]);
  assert.equal(ev.errors.at(-1).code, "token_expired");
  assert.ok(calls >= 2, "getToken was asked again");
  const sockets = shim.sockets.length;
  await sleep(2000); // observe: no reconnection
  assert.equal(shim.sockets.length, sockets);
  assert.equal(client.state, "closed");
});

test("when getToken rejects, the client emits token_error with the cause and retries with backoff instead of connecting anonymously", async () => {
  const shim = netShim();
  const token = await mintToken(srv.url, "u-tokfail", "premium");
  const failures = [new Error("token backend down"), new Error("token backend still down")];
  let calls = 0;
  const client = newClient({
    WebSocket: shim.WebSocket,
    getToken: async () => {
      calls++;
      const failure = failures.shift();
      if (failure) throw failure;
      return token;
    },
  });
  const ev = record(client);
  client.subscribe("test:tokfail", () => {});
  client.connect();
  await waitFor(() => ev.authenticated.length === 1, "authenticated once getToken works");
  assert.equal(calls, 3);
  const tokenErrors = ev.errors.filter((e) => e.code === "token_error");
  assert.equal(tokenErrors.length, 2);
  assert.equal(tokenErrors[0].cause.message, "token backend down");
  assert.match(tokenErrors[0].message, /token backend down/);
  assert.equal(tokenErrors[1].cause.message, "token backend still down");
  // No connection was opened while there was no token: the only one authenticated.
  assert.equal(shim.sockets.length, 1);
  assert.equal(ev.welcome.length, 1);
  assert.deepEqual(ev.states.slice(0, 2), ["connecting", "reconnecting"]);
  assert.equal(client.user, "u-tokfail");
  assert.equal(client.tier, "premium");
  assert.equal(client.state, "connected");
  client.close();
});

test("a getToken that throws after close 4001 is retried with backoff, not terminal and never anonymous", async () => {
  const shim = netShim();
  const short = await mintToken(srv.url, "u-exp3", "free", 3);
  const long = await mintToken(srv.url, "u-exp3", "free", 3600);
  let failed = 0;
  const client = newClient({
    WebSocket: shim.WebSocket,
    getToken: () => {
      if (!shim.closes.includes(4001)) return short;
      if (failed < 2) {
        failed++;
        throw new Error(`token service unavailable ${failed}`);
      }
      return long;
    },
  });
  const ev = record(client);
  client.subscribe("test:exp3", () => {});
  client.connect();
  await waitFor(() => ev.authenticated.length === 1, "authenticated");
  await waitFor(() => shim.closes.includes(4001), "the server's 4001 close at exp");
  await waitFor(() => ev.authenticated.length === 2 && client.state === "connected", "authenticated again");
  assert.equal(failed, 2);
  assert.deepEqual(
    ev.errors.filter((e) => e.code === "token_error").map((e) => e.cause.message),
    ["token service unavailable 1", "token service unavailable 2"],
  );
  assert.ok(!ev.errors.some((e) => e.code === "token_expired"));
  assert.ok(!ev.states.includes("closed"));
  // One connection before the 4001, one after getToken worked again: none in between.
  assert.equal(shim.sockets.length, 2);
  assert.equal(client.user, "u-exp3");
  client.close();
});
