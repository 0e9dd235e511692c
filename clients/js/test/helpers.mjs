// Test helpers: the real signalhub binary on a loopback port, its HTTP API, and a thin
// network shim over `ws` that can hold, block or duplicate the client's connections.
import { spawn } from "node:child_process";
import { once } from "node:events";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
export const BIN = process.env.SIGNALHUB_BIN ?? path.join(root, "target/release/signalhub");
export const PUBLISHER_KEY = "pubkey123456";
export const ADMIN_KEY = "adminkey123456";
export { WebSocket };

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it returns something truthy; the timeout is a guard, not an assertion. */
export async function waitFor(fn, label, timeoutMs = 20000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${label}`);
    await sleep(20);
  }
}

/** Starts `signalhub serve` on 127.0.0.1:`port` (0: any) and waits for `listening on`. */
export async function startServer({ port = 0, store = "sqlite::memory:" } = {}) {
  if (!fs.existsSync(BIN)) {
    throw new Error(`${BIN} is missing: build it with cargo build --release -p signalhub`);
  }
  for (let tries = 0; ; tries++) {
    try {
      return await spawnServer(port, store);
    } catch (e) {
      // Re-binding a port just freed by a killed server can race: retry a little.
      if (port === 0 || tries >= 20 || !/in use/i.test(String(e.message))) throw e;
      await sleep(250);
    }
  }
}

async function spawnServer(port, store) {
  const proc = spawn(BIN, ["serve", "--listen", `127.0.0.1:${port}`], {
    env: {
      ...process.env,
      SIGNALHUB_API_KEYS: `${PUBLISHER_KEY}:publisher,${ADMIN_KEY}:admin`,
      SIGNALHUB_JWT_SECRET: "0123456789abcdef0123456789abcdef",
      SIGNALHUB_STORE: store,
      SIGNALHUB_LOG: "warn",
    },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let log = "";
  const addr = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start: ${log}`)), 15000);
    proc.stderr.on("data", (d) => {
      if (log.length < 20000) log += d;
      const m = /listening on (\S+)/.exec(log);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    proc.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code}: ${log}`));
    });
  });
  return {
    url: `http://${addr}`,
    port: Number(addr.split(":").pop()),
    proc,
    async stop(signal = "SIGKILL") {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill(signal);
      await once(proc, "exit");
    },
  };
}

/** A loopback port nobody listens on. */
export async function closedPort() {
  const srv = net.createServer();
  srv.listen(0, "127.0.0.1");
  await once(srv, "listening");
  const { port } = srv.address();
  srv.close();
  await once(srv, "close");
  return port;
}

export async function api(base, method, pathname, body, key = PUBLISHER_KEY) {
  const res = await fetch(base + pathname, {
    method,
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${pathname}: ${res.status} ${text}`);
  return JSON.parse(text);
}

export const publish = (base, channel, data, extra = {}) =>
  api(base, "POST", "/api/v1/publish", { channel, type: "note", data, ...extra });

export const postSignal = (base, signal) =>
  api(base, "POST", "/api/v1/signals", { pair: "EUR_USD", signal_type: "BUY", confidence_score: 0.5, ...signal });

export const mintToken = async (base, user, tier = "free", ttl_s = 3600) =>
  (await api(base, "POST", "/api/v1/auth/token", { user, tier, ttl_s }, ADMIN_KEY)).token;

/** Subscribers the server counts on `channel` (read anonymously: reads take tokens, not API keys). */
export async function subscribers(base, channel) {
  const res = await fetch(`${base}/api/v1/channels/${encodeURIComponent(channel)}`);
  if (!res.ok) throw new Error(`GET channel ${channel}: ${res.status} ${await res.text()}`);
  return (await res.json()).subscribers;
}

/**
 * A WebSocket constructor for the client, over `ws`, with test controls:
 * `hold()`/`release()` keep new connections pending, `blocked` makes them fail at once,
 * `duplicate` delivers every publication frame twice. It records sockets, frames and close codes.
 */
export function netShim() {
  const shim = { sockets: [], closes: [], blocked: false, duplicate: false, gate: null, releaseGate: null };
  shim.hold = () => {
    shim.gate = new Promise((r) => (shim.releaseGate = r));
  };
  shim.release = () => {
    const r = shim.releaseGate;
    shim.gate = null;
    shim.releaseGate = null;
    r?.();
  };
  class ShimSocket {
    onopen = null;
    onmessage = null;
    onerror = null;
    onclose = null;
    readyState = 0;
    frames = [];
    constructor(url) {
      this.url = url;
      shim.sockets.push(this);
      if (shim.blocked) {
        setTimeout(() => {
          this.readyState = 3;
          this.onerror?.({ message: "blocked by the test" });
          this.onclose?.({ code: 1006, reason: "" });
        }, 0);
        return;
      }
      Promise.resolve(shim.gate).then(() => this.connect());
    }
    connect() {
      if (this.readyState === 3) return; // closed while held
      const ws = (this.ws = new WebSocket(this.url));
      ws.onopen = (e) => {
        this.readyState = 1;
        this.onopen?.(e);
      };
      ws.onmessage = (e) => {
        const msg = JSON.parse(e.data);
        this.frames.push(msg);
        this.onmessage?.(e);
        if (shim.duplicate && typeof msg.seq === "number") this.onmessage?.(e);
      };
      ws.onerror = (e) => this.onerror?.(e);
      ws.onclose = (e) => {
        this.readyState = 3;
        shim.closes.push(e.code);
        this.onclose?.(e);
      };
    }
    send(data) {
      this.ws?.send(data);
    }
    close(code, reason) {
      if (this.ws) this.ws.close(code, reason);
      else this.readyState = 3;
    }
    /** Drops the TCP connection without a close handshake (code 1006 on the client). */
    terminate() {
      this.ws?.terminate();
    }
  }
  shim.WebSocket = ShimSocket;
  return shim;
}

/** Collects a client's events. */
export function record(client) {
  const ev = { states: [], welcome: [], authenticated: [], resync: [], errors: [], unsubscribed: [] };
  client.on("state", (s) => ev.states.push(s));
  client.on("welcome", (i) => ev.welcome.push(i));
  client.on("authenticated", (i) => ev.authenticated.push(i));
  client.on("resync", (i) => ev.resync.push(i));
  client.on("error", (e) => ev.errors.push(e));
  client.on("unsubscribed", (i) => ev.unsubscribed.push(i));
  return ev;
}
