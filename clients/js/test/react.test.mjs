// useSignals, rendered with react-test-renderer against the real server.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { createElement } from "react";
import TestRenderer from "react-test-renderer";
import { SignalHubClient } from "../dist/index.js";
import { useSignals } from "../dist/react.js";
import { WebSocket, postSignal, startServer, subscribers, waitFor } from "./helpers.mjs";

// react-test-renderer still works in React 19 but says it is deprecated on every render.
const consoleError = console.error;
console.error = (...args) => {
  if (!String(args[0]).includes("react-test-renderer is deprecated")) consoleError(...args);
};

let srv;
before(async () => {
  srv = await startServer();
});
after(async () => {
  await srv?.stop();
});

function render(opts) {
  const out = { current: null };
  function Probe() {
    out.current = useSignals(opts);
    return null;
  }
  const renderer = TestRenderer.create(createElement(Probe));
  return { out, renderer };
}

test("useSignals lists stored signals and adds live ones over the client", async () => {
  await postSignal(srv.url, { signal_id: "react-old" });
  const client = new SignalHubClient({ url: srv.url, WebSocket });
  const { out, renderer } = render({ client, limit: 5 });
  await waitFor(() => out.current && !out.current.isLoading && out.current.state === "connected", "loaded");
  assert.equal(out.current.signals[0].signal_id, "react-old");
  await waitFor(async () => (await subscribers(srv.url, "signals")) === 1, "the server subscription");

  await postSignal(srv.url, { signal_id: "react-live" });
  await waitFor(() => out.current.signals[0]?.signal_id === "react-live", "the live signal");
  assert.deepEqual(
    out.current.signals.map((s) => s.signal_id),
    ["react-live", "react-old"],
  );
  assert.equal(out.current.error, null);
  renderer.unmount();
  await waitFor(async () => (await subscribers(srv.url, "signals")) === 0, "unsubscribed on unmount");
  assert.equal(client.state, "connected", "a client passed in is not closed by the hook");
  client.close();
});

test("useSignals polls GET /api/v1/signals when useWebSocket is false", async () => {
  const { out, renderer } = render({ url: srv.url, useWebSocket: false, pollInterval: 100, limit: 10 });
  await waitFor(() => out.current && !out.current.isLoading, "loaded");
  assert.equal(out.current.state, "fallback-poll");
  await postSignal(srv.url, { signal_id: "react-polled" });
  await waitFor(() => out.current.signals[0]?.signal_id === "react-polled", "the polled signal");
  renderer.unmount();
});
