// Shared by the browser tests and the screenshot script: starts the real signalhub binary
// on loopback, talks to its HTTP API, and launches Debian's Chromium through playwright-core.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
export const REPO = join(here, "..", "..");
export const BIN = process.env.SIGNALHUB_BIN ?? join(REPO, "target", "release", "signalhub");
export const CHROMIUM = process.env.CHROMIUM_BIN ?? "/usr/bin/chromium";
export const PUBLISHER_KEY = "pubkey123456";
export const ADMIN_KEY = "adminkey123456";
const JWT_SECRET = "0123456789abcdef0123456789abcdef";

/** A free TCP port on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Starts the server and resolves once it printed `listening on ADDR`.
 * `store` defaults to in-memory SQLite; `port` 0 picks one.
 */
export async function startServer({ port = 0, store = "sqlite::memory:", env = {} } = {}) {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: cargo build --release -p signalhub`);
  const child = spawn(BIN, ["serve", "--listen", `127.0.0.1:${port}`], {
    env: {
      PATH: process.env.PATH,
      SIGNALHUB_API_KEYS: `${PUBLISHER_KEY}:publisher,${ADMIN_KEY}:admin`,
      SIGNALHUB_JWT_SECRET: JWT_SECRET,
      SIGNALHUB_STORE: store,
      SIGNALHUB_LOG: "warn",
      ...env,
    },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  const addr = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${stderr}`)), 15000);
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (chunk) => {
      stderr += chunk;
      const m = /listening on (\S+)/.exec(stderr);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code}:\n${stderr}`));
    });
  });
  const exited = new Promise((resolve) => child.on("exit", resolve));
  return {
    url: `http://${addr}`,
    port: Number(addr.split(":").pop()),
    child,
    /** SIGKILL: an abrupt outage, no goodbye frames. */
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 10000);
      await exited;
      clearTimeout(timer);
    },
  };
}

async function call(base, method, path, key, body) {
  const res = await fetch(base + path, {
    method,
    headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return JSON.parse(text);
}

export const publishSignal = (base, signal) => call(base, "POST", "/api/v1/signals", PUBLISHER_KEY, signal);
export const publishPrice = (base, product, price) =>
  call(base, "POST", "/api/v1/publish", PUBLISHER_KEY, { channel: `price:${product}`, type: "price_update", data: { price } });
export const mintToken = (base, user, tier, ttl_s = 3600) =>
  call(base, "POST", "/api/v1/auth/token", ADMIN_KEY, { user, tier, ttl_s }).then((r) => r.token);

/** Headless Chromium with a fresh profile; `close()` removes the profile. */
export async function launchBrowser() {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium`);
  const profile = mkdtempSync(join(tmpdir(), "signalhub-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    viewport: { width: 1280, height: 860 },
  });
  return {
    context,
    async page(viewport) {
      const page = await context.newPage();
      if (viewport) await page.setViewportSize(viewport);
      page.on("pageerror", (err) => console.error("page error:", err.message));
      return page;
    },
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
