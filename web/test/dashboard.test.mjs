// Browser tests of the dashboard at GET /: headless Chromium (Debian's, through
// playwright-core) against the real signalhub binary, which each test starts itself.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { launchBrowser, mintToken, publishPrice, publishSignal, startServer } from "./harness.mjs";

/**
 * How long a wait for something live may take before the test gives up: a guard against a
 * hang, not a latency requirement (tests never assert wall-clock times; the time a signal
 * takes to reach the page is printed as a diagnostic).
 */
const LIVE_MS = 15000;

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

  test("a signal published over HTTP appears on the page live", async (t) => {
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

  test("above-tier stored signals stay locked rows, once each, after a reload and after a server restart", async (t) => {
    const dir = mkdtempSync(join(tmpdir(), "signalhub-dashboard-"));
    const store = `sqlite:${join(dir, "signals.db")}`;
    let server = await startServer({ store });
    t.after(async () => {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    });
    let page = await openDashboard(server.url);
    t.after(() => page.close());
    const free = unique("free");
    const premium = unique("prem");
    const whale = unique("whale");
    await publishSignal(server.url, { signal_id: free, pair: "EUR_USD", signal_type: "BUY", entry_price: 1.1, confidence_score: 0.5 });
    await publishSignal(server.url, { signal_id: premium, pair: "GBP_JPY", signal_type: "SELL", entry_price: 199.5, confidence_score: 0.85 });
    await publishSignal(server.url, { signal_id: whale, pair: "NZD_USD", signal_type: "BUY", entry_price: 0.6, confidence_score: 0.95 });
    await page.locator('ol.feed > li.locked[data-locked="whale"]').waitFor({ timeout: LIVE_MS });
    assert.equal(await page.locator("ol.feed > li.locked").count(), 2, "live: two locked rows");

    const lockedRows = async () => {
      await page.locator(`li[data-signal-id="${free}"]`).waitFor({ timeout: 5000 });
      await page.locator(`li.locked[data-locked-signal="${whale}"]`).waitFor({ timeout: 5000 });
      await page.locator(`li.locked[data-locked-signal="${premium}"]`).waitFor({ timeout: 5000 });
      return page.locator("ol.feed > li.locked").evaluateAll((rows) => rows.map((r) => `${r.dataset.locked}:${r.dataset.lockedSignal}`));
    };
    const noData = async () => {
      const text = await page.locator("#signals").textContent();
      assert.ok(!text.includes("GBP_JPY") && !text.includes("199.5") && !text.includes("NZD_USD"), "no data of the locked signals");
    };

    // A reload: the channel history and the store both name the locked signals; one row each.
    await page.reload();
    await page.locator('#status[data-state="connected"]').waitFor({ timeout: 10000 });
    assert.deepEqual(await lockedRows(), [`whale:${whale}`, `premium:${premium}`]);
    assert.equal(await page.locator("ol.feed > li").count(), 3);
    await noData();

    // A restart empties the history: the locked rows come from the store alone.
    const port = server.port;
    await server.stop();
    server = await startServer({ port, store });
    await page.reload();
    await page.locator('#status[data-state="connected"]').waitFor({ timeout: 10000 });
    assert.deepEqual(await lockedRows(), [`whale:${whale}`, `premium:${premium}`]);
    assert.equal(await page.locator("ol.feed > li").count(), 3);
    await noData();
    assert.match(await page.locator(".feed-count").textContent(), /3 shown · 2 locked/);

    // A premium token: the stored premium signal replaces its locked row; the whale one stays locked.
    const token = await mintToken(server.url, "u7", "premium");
    await page.fill("#token", token);
    await page.click('#token-form button[type="submit"]');
    await page.locator("#token-result.ok").waitFor({ timeout: 5000 });
    const row = page.locator(`li[data-signal-id="${premium}"]`);
    await row.waitFor({ timeout: 5000 });
    assert.equal(await row.locator(".pair b").textContent(), "GBP_JPY");
    assert.equal(await page.locator(`li.locked[data-locked-signal="${premium}"]`).count(), 0);
    assert.equal(await page.locator(`li.locked[data-locked-signal="${whale}"]`).count(), 1);
    assert.equal(await page.locator("ol.feed > li").count(), 3);
  });

  test("signal rows show the stop-loss and every take-profit target", async (t) => {
    const server = await startServer();
    t.after(() => server.stop());
    const page = await openDashboard(server.url);
    t.after(() => page.close());
    const withLevels = unique("levels");
    const without = unique("nolevels");
    await publishSignal(server.url, {
      signal_id: withLevels,
      pair: "EUR_USD",
      signal_type: "BUY",
      entry_price: 1.095,
      stop_loss: 1.09,
      take_profit: [1.1, 1.105],
      confidence_score: 0.6,
    });
    await publishSignal(server.url, { signal_id: without, pair: "BTC-USD", signal_type: "SELL", entry_price: 64000, confidence_score: 0.5 });
    const row = page.locator(`li[data-signal-id="${withLevels}"]`);
    await row.waitFor({ timeout: LIVE_MS });
    assert.equal(await row.locator(".levels .sl").textContent(), "SL 1.0900");
    assert.equal(await row.locator(".levels .tp").textContent(), "TP 1.1000 · 1.1050");
    assert.equal(await row.locator(".levels .sl").getAttribute("title"), "stop-loss");
    const plain = page.locator(`li[data-signal-id="${without}"]`);
    await plain.waitFor({ timeout: LIVE_MS });
    assert.equal(await plain.locator(".levels").textContent(), "—");

    // The stored record after a reload shows the same levels.
    await page.reload();
    await page.locator(`li[data-signal-id="${withLevels}"] .levels .tp`).waitFor({ timeout: 5000 });
    assert.equal(await page.locator(`li[data-signal-id="${withLevels}"] .levels .tp`).textContent(), "TP 1.1000 · 1.1050");
  });

  test("pair, side and tier filters apply to loaded and live rows, are kept in the URL and survive a reload", async (t) => {
    const server = await startServer();
    t.after(() => server.stop());
    const ids = { eurBuy: unique("eurbuy"), eurSell: unique("eursell"), btcBuy: unique("btcbuy"), gbpPrem: unique("gbpprem") };
    // Loaded over HTTP when the page opens.
    await publishSignal(server.url, { signal_id: ids.eurBuy, pair: "EUR_USD", signal_type: "BUY", entry_price: 1.1, confidence_score: 0.5 });
    await publishSignal(server.url, { signal_id: ids.eurSell, pair: "EUR_USD", signal_type: "SELL", entry_price: 1.1, confidence_score: 0.6 });
    await publishSignal(server.url, { signal_id: ids.btcBuy, pair: "BTC-USD", signal_type: "BUY", entry_price: 64000, confidence_score: 0.5 });
    await publishSignal(server.url, { signal_id: ids.gbpPrem, pair: "GBP_JPY", signal_type: "SELL", entry_price: 199, confidence_score: 0.85 });
    const page = await openDashboard(server.url, "?prices=BTC-USD");
    t.after(() => page.close());
    await page.locator(`li[data-signal-id="${ids.btcBuy}"]`).waitFor({ timeout: 5000 });
    await page.locator('li.locked[data-locked="premium"]').waitFor({ timeout: 5000 });
    const visible = () =>
      page.locator("ol.feed > li:not([hidden])").evaluateAll((rows) => rows.map((r) => r.dataset.signalId ?? `locked:${r.dataset.locked}`).sort());
    assert.equal((await visible()).length, 4);

    await page.fill("#filter-pair", "eur");
    assert.deepEqual(await visible(), [ids.eurBuy, ids.eurSell].sort());
    await page.selectOption("#filter-side", "SELL");
    assert.deepEqual(await visible(), [ids.eurSell]);
    const url = new URL(page.url());
    assert.equal(url.searchParams.get("pair"), "EUR");
    assert.equal(url.searchParams.get("side"), "SELL");
    assert.equal(url.searchParams.get("prices"), "BTC-USD", "other options are kept");
    assert.match(await page.locator(".feed-count").textContent(), /^1 of 4 shown/);

    // Live rows are filtered too.
    const liveMatch = unique("livesell");
    const liveOther = unique("livebuy");
    await publishSignal(server.url, { signal_id: liveOther, pair: "EUR_USD", signal_type: "BUY", entry_price: 1.1, confidence_score: 0.5 });
    await publishSignal(server.url, { signal_id: liveMatch, pair: "EUR/USD", signal_type: "sell", entry_price: 1.1, confidence_score: 0.5 });
    await page.locator(`li[data-signal-id="${liveMatch}"]`).waitFor({ timeout: LIVE_MS });
    await page.locator(`li[data-signal-id="${liveOther}"]`).waitFor({ state: "hidden", timeout: LIVE_MS });
    assert.deepEqual(await visible(), [ids.eurSell, liveMatch].sort());

    // A reload keeps them: the URL holds them.
    await page.reload();
    await page.locator('#status[data-state="connected"]').waitFor({ timeout: 10000 });
    await page.locator(`li[data-signal-id="${liveMatch}"]`).waitFor({ timeout: 5000 });
    await page.locator(`li[data-signal-id="${ids.btcBuy}"]`).waitFor({ state: "hidden", timeout: 5000 });
    assert.equal(await page.inputValue("#filter-pair"), "EUR");
    assert.equal(await page.inputValue("#filter-side"), "SELL");
    assert.deepEqual(await visible(), [ids.eurSell, liveMatch].sort());

    // Tier: locked rows have a tier, so they match a tier filter alone.
    await page.click("#filter-clear");
    assert.equal(new URL(page.url()).search, "?prices=BTC-USD");
    assert.equal((await visible()).length, 6);
    await page.selectOption("#filter-tier", "premium");
    assert.deepEqual(await visible(), ["locked:premium"]);
    assert.equal(new URL(page.url()).searchParams.get("tier"), "premium");
    await page.selectOption("#filter-tier", "free");
    assert.equal((await visible()).length, 5);
  });

  test("the last price seen is kept in the browser across a server restart, shown stale until a fresh one arrives", async (t) => {
    let server = await startServer();
    t.after(() => server.stop());
    const page = await openDashboard(server.url, "?prices=BTC-USD,ETH-USD&retry_ms=250&max_retry_ms=1000");
    t.after(() => page.close());
    const btc = page.locator('.ticker[data-channel="price:BTC-USD"]');
    const eth = page.locator('.ticker[data-channel="price:ETH-USD"]');
    await publishPrice(server.url, "BTC-USD", 64250.5);
    await btc.locator(".price", { hasText: "64,250.50" }).waitFor({ timeout: LIVE_MS });
    assert.equal(await btc.getAttribute("data-stale"), null);

    // The server keeps prices in memory: a new process has none.
    const port = server.port;
    await server.kill();
    server = await startServer({ port });
    await page.reload();
    await page.locator('#status[data-state="connected"]').waitFor({ timeout: 10000 });
    const history = await (await fetch(`${server.url}/api/v1/channels/price:BTC-USD/history`)).json();
    assert.equal(history.publications.length, 0, "the restarted server has no BTC-USD price");
    // Subscribed, and still nothing from the server: the saved price, marked stale.
    for (let tries = 0; ; tries++) {
      const info = await (await fetch(`${server.url}/api/v1/channels/price:BTC-USD`)).json();
      if (info.subscribers >= 1) break;
      assert.ok(tries < 200, "the page subscribed to price:BTC-USD");
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(await btc.getAttribute("data-stale"), "true");
    assert.match(await btc.getAttribute("class"), /\bstale\b/);
    assert.equal(await btc.locator(".price").textContent(), "64,250.50");
    assert.match(await btc.locator(".age").textContent(), /^last seen \d\d:\d\d:\d\d \((now|\d+s ago)\)$/);
    assert.equal(await eth.getAttribute("data-stale"), null, "no price ever seen: nothing stale");
    assert.equal(await eth.locator(".price").textContent(), "—");

    // A fresh price replaces it.
    await publishPrice(server.url, "BTC-USD", 64300);
    await btc.locator(".price", { hasText: "64,300.00" }).waitFor({ timeout: LIVE_MS });
    assert.equal(await btc.getAttribute("data-stale"), null);
    assert.match(await btc.locator(".age").textContent(), /^updated/);
    // And it is what the browser keeps now.
    await page.waitForFunction(() => JSON.parse(localStorage.getItem("signalhub.lastPrices"))["price:BTC-USD"]?.price === 64300, null, {
      timeout: 5000,
    });
  });
});
