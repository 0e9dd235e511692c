// Renders docs/images/dashboard.png (desktop) and dashboard-phone.png (375 px) against a real
// server filled with a little sample data. Needs target/release/signalhub and /usr/bin/chromium.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { launchBrowser, publishPrice, publishSignal, REPO, sleep, startServer } from "../test/harness.mjs";

const out = join(REPO, "docs", "images");
mkdirSync(out, { recursive: true });

// A small deterministic random walk, so the pictures look alike from run to run.
let seed = 7;
const rand = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);

const server = await startServer();
const browser = await launchBrowser();
try {
  const base = server.url;
  const prices = { "BTC-USD": 64250.1, "ETH-USD": 3120.45, "EUR-USD": 1.0948 };
  for (let i = 0; i < 40; i++) {
    for (const [product, p] of Object.entries(prices)) {
      prices[product] = Number((p * (1 + (rand() - 0.48) * 0.004)).toFixed(p < 10 ? 5 : 2));
      await publishPrice(base, product, prices[product]);
    }
  }
  const minutesAgo = (m) => new Date(Date.now() - m * 60000).toISOString();
  const signals = [
    { pair: "GBP_USD", signal_type: "SELL", entry_price: 1.2714, stop_loss: 1.2755, take_profit: [1.268, 1.265], confidence_score: 0.62, source: "bot:7", timeframe: "15m", timestamp: minutesAgo(14) },
    { pair: "BTC-USD", signal_type: "BUY", entry_price: 63980.5, confidence_score: 0.91, source: "bot:alpha", strategy: "breakout", timestamp: minutesAgo(11) },
    { pair: "XAU_USD", signal_type: "BUY", entry_price: 2351.2, stop_loss: 2338, take_profit: [2370], confidence_score: 0.74, source: "bot:7", timeframe: "1h", timestamp: minutesAgo(8) },
    { pair: "ETH-USD", signal_type: "SELL", entry_price: 3131.0, confidence_score: 0.83, source: "bot:alpha", timestamp: minutesAgo(5) },
    { pair: "USD_JPY", signal_type: "SELL", entry_price: 156.42, confidence_score: 0.58, strategy: "mean_revert", timeframe: "4h", timestamp: minutesAgo(3) },
  ];
  for (const s of signals) await publishSignal(base, s);

  const live = [
    { pair: "EUR_USD", signal_type: "BUY", entry_price: "1.0950", stop_loss: "1.0920", take_profit: ["1.0990", "1.1020"], confidence_score: 0.71, source: "bot:7", timeframe: "1h", strategy: "sma_cross" },
    { pair: "SOL-USD", signal_type: "BUY", entry_price: 171.3, confidence_score: 0.86 },
  ];
  const shoot = async (name, viewport) => {
    const page = await browser.page(viewport);
    await page.goto(base + "/");
    await page.waitForSelector('#status[data-state="connected"]', { timeout: 5000 });
    for (const s of live.splice(0)) await publishSignal(base, s);
    for (const [product, p] of Object.entries(prices)) await publishPrice(base, product, Number((p * 1.001).toFixed(p < 10 ? 5 : 2)));
    await sleep(2600); // two stats polls, so messages/s has a value; the arrival flash has faded
    await page.screenshot({ path: join(out, name), fullPage: true });
    console.log(`docs/images/${name}`);
    await page.close();
  };
  await shoot("dashboard.png", { width: 1280, height: 820 });
  await shoot("dashboard-phone.png", { width: 375, height: 812 });
} finally {
  await browser.close();
  await server.stop();
}
