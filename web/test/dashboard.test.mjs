// Browser tests of the dashboard at GET /: headless Chromium (Debian's, through
// playwright-core) against the real signalhub binary, which each test starts itself.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { launchBrowser, mintToken, publishSignal, startServer } from "./harness.mjs";

/** The requirement: a published signal is on the page within 2 s. */
const LIVE_MS = 2000;

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

async function openDashboard(base, query = "") {
  const page = await browser.page();
  await page.goto(`${base}/${query}`);
  await page.locator('#status[data-state="connected"]').waitFor({ timeout: 10000 });
  return page;
}

const unique = (prefix) => `${prefix}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;

describe("dashboard", () => {
  test("GET / and its assets are served from the binary with content types and caching", async (t) => {
    const server = await startServer();
    t.after(() => server.stop());
    const page = await fetch(`${server.url}/`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get("content-type"), /^text\/html/);
    assert.equal(page.headers.get("cache-control"), "no-cache");
    const html = await page.text();
    const js = /src="(\/assets\/app\.js\?v=[0-9a-f]+)"/.exec(html);
    const css = /href="(\/assets\/app\.css\?v=[0-9a-f]+)"/.exec(html);
    assert.ok(js && css, "the page names its hashed assets");
    for (const [path, type] of [
      [js[1], /^text\/javascript/],
      [css[1], /^text\/css/],
    ]) {
      const res = await fetch(server.url + path);
      assert.equal(res.status, 200, path);
      assert.match(res.headers.get("content-type"), type);
      assert.match(res.headers.get("cache-control"), /max-age=\d+/);
      assert.ok((await res.text()).length > 1000);
    }
  });

  test("a signal published over HTTP appears on the page within 2 s", async (t) => {
    const server = await startServer();
    t.after(() => server.stop());
    const page = await openDashboard(server.url);
    t.after(() => page.close());

    const id = unique("live");
    const started = Date.now();
    await publishSignal(server.url, {
      signal_id: id,
      pair: "EUR_USD",
      signal_type: "BUY",
      entry_price: 1.095,
      confidence_score: 0.65,
      source: "bot:7",
    });
    const row = page.locator(`li[data-signal-id="${id}"]`);
    await row.waitFor({ timeout: LIVE_MS });
    const elapsed = Date.now() - started;
    t.diagnostic(`on the page ${elapsed} ms after the publish was sent`);
    assert.ok(elapsed <= LIVE_MS, `took ${elapsed} ms`);
    assert.equal(await row.locator(".side").textContent(), "BUY");
    assert.equal(await row.locator(".pair b").textContent(), "EUR_USD");
    assert.equal(await row.locator(".entry").textContent(), "1.0950");
    assert.equal(await row.locator(".tier").textContent(), "free");
    assert.match(await row.locator(".age").textContent(), /now|\ds ago/);
    // Newest on top, and the bot panel counts it.
    assert.equal(await page.locator("ol.feed > li").first().getAttribute("data-signal-id"), id);
    await page.locator('li.bot[data-bot="7"]').waitFor({ timeout: LIVE_MS });
  });

  test("falls back to SSE when told to, says so, and still shows live signals; fits a 375 px phone", async (t) => {
    const server = await startServer();
    t.after(() => server.stop());
    const page = await browser.page({ width: 375, height: 812 });
    t.after(() => page.close());
    await page.goto(`${server.url}/?transports=sse`);
    await page.locator('#status[data-state="fallback-sse"]').waitFor({ timeout: 10000 });
    assert.equal((await page.locator("#status").textContent()).trim(), "Fallback: SSE");
    const id = unique("sse");
    await publishSignal(server.url, { signal_id: id, pair: "BTC-USD", signal_type: "SELL", entry_price: 64000, confidence_score: 0.4 });
    await page.locator(`li[data-signal-id="${id}"]`).waitFor({ timeout: LIVE_MS });
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 375, `the page is ${width} px wide at 375`);
  });

  test("a premium signal is a locked row for an anonymous viewer and shows after a premium token is pasted", async (t) => {
    const server = await startServer();
    t.after(() => server.stop());
    const page = await openDashboard(server.url);
    t.after(() => page.close());
    assert.equal(await page.locator("#identity").getAttribute("data-tier"), "free");

    const id = unique("prem");
    const pair = "GBP_JPY";
    const answer = await publishSignal(server.url, {
      signal_id: id,
      pair,
      signal_type: "SELL",
      entry_price: 199.123,
      confidence_score: 0.85,
    });
    assert.equal(answer.tier, "premium");

    const locked = page.locator('ol.feed > li.locked[data-locked="premium"]');
    await locked.waitFor({ timeout: LIVE_MS });
    assert.match(await locked.textContent(), /premium signal — upgrade to see/);
    assert.equal(await page.locator(`li[data-signal-id="${id}"]`).count(), 0);
    const feedText = await page.locator("#signals").textContent();
    assert.ok(!feedText.includes(pair) && !feedText.includes("199.123"), "no data of the premium signal on the page");

    // An invalid token: a visible error, still free.
    await page.fill("#token", "not-a-token");
    await page.click('#token-form button[type="submit"]');
    await page.locator("#token-result.error").waitFor({ timeout: 5000 });
    assert.match(await page.locator("#token-result").textContent(), /refused/i);
    assert.equal(await page.locator("#identity").getAttribute("data-tier"), "free");

    // A premium token: the tier changes without reconnecting and the signal's data shows.
    const token = await mintToken(server.url, "u1", "premium");
    await page.fill("#token", token);
    await page.click('#token-form button[type="submit"]');
    await page.locator("#token-result.ok").waitFor({ timeout: 5000 });
    assert.match(await page.locator("#token-result").textContent(), /u1 · tier premium/);
    assert.equal(await page.locator("#identity").getAttribute("data-tier"), "premium");
    const row = page.locator(`li[data-signal-id="${id}"]`);
    await row.waitFor({ timeout: LIVE_MS });
    assert.equal(await row.locator(".pair b").textContent(), pair);
    assert.equal(await row.locator(".side").textContent(), "SELL");
    assert.equal(await page.locator('ol.feed > li.locked[data-locked="premium"]').count(), 0);
    assert.equal(await page.locator("#status").getAttribute("data-state"), "connected");

    // Live premium signals now arrive with their data; whale ones stay locked.
    const next = unique("prem2");
    await publishSignal(server.url, { signal_id: next, pair: "AUD_USD", signal_type: "BUY", entry_price: 0.6612, confidence_score: 0.88 });
    await page.locator(`li[data-signal-id="${next}"]`).waitFor({ timeout: LIVE_MS });
    await publishSignal(server.url, { pair: "NZD_USD", signal_type: "BUY", entry_price: 0.6, confidence_score: 0.95 });
    await page.locator('ol.feed > li.locked[data-locked="whale"]').waitFor({ timeout: LIVE_MS });
  });

  test("after a server restart the status shows reconnecting then connected, and a signal published during the outage appears", async (t) => {
    const dir = mkdtempSync(join(tmpdir(), "signalhub-dashboard-"));
    const store = `sqlite:${join(dir, "signals.db")}`;
    let server = await startServer({ store });
    t.after(async () => {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    });
    // A short reconnect backoff, so the test does not wait long once the page may reconnect.
    const page = await openDashboard(server.url, "?retry_ms=250&max_retry_ms=1000");
    t.after(() => page.close());
    const seen = [];
    await page.exposeFunction("recordState", (s) => seen.push(s));
    await page.evaluate(() => {
      const pill = document.getElementById("status");
      new MutationObserver(() => window.recordState(pill.dataset.state)).observe(pill, { attributes: true, attributeFilter: ["data-state"] });
    });

    const before = unique("before");
    await publishSignal(server.url, { signal_id: before, pair: "EUR_USD", signal_type: "BUY", entry_price: 1.1, confidence_score: 0.5 });
    await page.locator(`li[data-signal-id="${before}"]`).waitFor({ timeout: LIVE_MS });

    const port = server.port;
    await server.kill();
    await page.locator('#status[data-state="reconnecting"]').waitFor({ timeout: 5000 });

    // Hold the page off the network while the new process starts and takes the outage signal,
    // so that the signal is published before the page reconnects, whatever the backoff's jitter.
    await page.context().setOffline(true);
    server = await startServer({ port, store });
    const during = unique("outage");
    await publishSignal(server.url, { signal_id: during, pair: "USD_CHF", signal_type: "SELL", entry_price: 0.9012, confidence_score: 0.7 });
    assert.notEqual(await page.locator("#status").getAttribute("data-state"), "connected", "the page must not have reconnected yet");
    await page.context().setOffline(false);

    await page.locator('#status[data-state="connected"]').waitFor({ timeout: 10000 });
    await page.locator(`li[data-signal-id="${during}"]`).waitFor({ timeout: 5000 });
    assert.equal(await page.locator(`li[data-signal-id="${before}"]`).count(), 1, "the earlier signal is kept, once");
    assert.equal(await page.locator(`li[data-signal-id="${during}"]`).count(), 1);
    const fromReconnecting = seen.lastIndexOf("reconnecting");
    assert.ok(fromReconnecting >= 0 && seen.indexOf("connected", fromReconnecting) > fromReconnecting, `states: ${seen.join(" -> ")}`);
    t.diagnostic(`states: ${seen.join(" -> ")}`);

    // And it is live again.
    const afterwards = unique("after");
    await publishSignal(server.url, { signal_id: afterwards, pair: "EUR_USD", signal_type: "BUY", entry_price: 1.1, confidence_score: 0.5 });
    await page.locator(`li[data-signal-id="${afterwards}"]`).waitFor({ timeout: LIVE_MS });
  });
});
