// Price tickers for `price:*` channels, each with a sparkline of the recent updates. The server
// keeps latest prices in memory only, so the last price seen per channel is also kept in this
// browser's localStorage and shown, marked stale ("last seen ..."), until a price arrives.

import { ago, el, num, price, time } from "./format";
import { Sparkline } from "./sparkline";
import type { Envelope } from "./types";

const POINTS = 60;
/** localStorage key: `{ [channel]: { price, ts } }`, the last price this browser saw. */
export const SAVED_PRICES_KEY = "signalhub.lastPrices";

interface Saved {
  price: number;
  ts: number;
}

function loadSaved(): Record<string, Saved> {
  try {
    const raw = JSON.parse(localStorage.getItem(SAVED_PRICES_KEY) ?? "{}");
    return raw && typeof raw === "object" ? raw : {};
  } catch {
    return {};
  }
}

/** "14:03:12" today, "2 Dec 14:03" before. */
function clock(ms: number, now: number): string {
  const d = new Date(ms);
  const sameDay = d.toDateString() === new Date(now).toDateString();
  return sameDay
    ? d.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit", second: "2-digit" })
    : d.toLocaleString("en-GB", { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" });
}

/** The price in a `price_update`'s data: a number, or `price`/`last`/`close`/`mid`/`value`, or bid and ask. */
export function priceOf(data: unknown): number | undefined {
  const direct = num(data);
  if (direct !== undefined) return direct;
  if (!data || typeof data !== "object") return undefined;
  const d = data as Record<string, unknown>;
  for (const key of ["price", "last", "close", "mid", "value", "p"]) {
    const v = num(d[key]);
    if (v !== undefined) return v;
  }
  const bid = num(d.bid);
  const ask = num(d.ask);
  if (bid !== undefined && ask !== undefined) return (bid + ask) / 2;
  return undefined;
}

class Ticker {
  readonly node: HTMLElement;
  private readonly priceEl: HTMLElement;
  private readonly changeEl: HTMLElement;
  private readonly ageEl: HTMLTimeElement;
  private readonly spark = new Sparkline();
  private points: Array<{ id: string; ts: number; v: number }> = [];
  private lastTs = 0;
  /** The saved price shown until one arrives from the server. */
  private stale: Saved | null = null;

  constructor(readonly channel: string) {
    this.node = el("article", "ticker flat");
    this.node.dataset.channel = channel;
    const head = el("header");
    head.append(el("span", "symbol", channel.slice("price:".length)), (this.changeEl = el("span", "change num", "")));
    this.priceEl = el("div", "price num", "—");
    this.ageEl = el("time", "age", "waiting for a price");
    this.node.append(head, this.priceEl, this.spark.svg, this.ageEl);
  }

  /** The last price saved in this browser, from a previous visit: greyed, "last seen ...". */
  showStale(saved: Saved): void {
    if (this.points.length || typeof saved?.price !== "number" || typeof saved.ts !== "number") return;
    this.stale = saved;
    this.node.classList.add("stale");
    this.node.dataset.stale = "true";
    this.priceEl.textContent = price(saved.price);
    this.node.title = "The server keeps prices in memory only: this is the last price this browser saw.";
    this.tick(Date.now());
  }

  /** The newest price, to save. */
  get latest(): Saved | null {
    const p = this.points[this.points.length - 1];
    return p ? { price: p.v, ts: p.ts } : null;
  }

  /** Returns whether the price was new. */
  add(env: Envelope, live: boolean): boolean {
    const v = priceOf(env.data);
    if (v === undefined) return false;
    if (this.points.some((p) => p.id === env.id)) return false;
    if (this.stale) {
      this.stale = null;
      this.node.classList.remove("stale");
      delete this.node.dataset.stale;
      this.node.removeAttribute("title");
    }
    const ts = time(env.timestamp);
    const previous = this.points.length ? this.points[this.points.length - 1].v : undefined;
    this.points.push({ id: env.id, ts, v });
    this.points.sort((a, b) => a.ts - b.ts);
    if (this.points.length > POINTS) this.points.splice(0, this.points.length - POINTS);
    const latest = this.points[this.points.length - 1];
    this.lastTs = latest.ts;
    this.priceEl.textContent = price(latest.v);
    const first = this.points[0].v;
    const change = first ? (latest.v - first) / first : 0;
    this.changeEl.textContent = this.points.length > 1 ? `${change >= 0 ? "+" : ""}${(change * 100).toFixed(2)}%` : "";
    this.node.classList.toggle("up", change > 0);
    this.node.classList.toggle("down", change < 0);
    this.node.classList.toggle("flat", change === 0);
    this.spark.draw(this.points.map((p) => p.v));
    if (live && previous !== undefined && latest.v !== previous) {
      this.priceEl.classList.remove("tick-up", "tick-down");
      void this.priceEl.offsetWidth; // restart the flash animation
      this.priceEl.classList.add(latest.v > previous ? "tick-up" : "tick-down");
    }
    this.tick(Date.now());
    return true;
  }

  tick(now: number): void {
    if (this.stale) this.ageEl.textContent = `last seen ${clock(this.stale.ts, now)} (${ago(this.stale.ts, now)})`;
    else if (this.lastTs) this.ageEl.textContent = `updated ${ago(this.lastTs, now)}`;
  }
}

export class Tickers {
  private readonly tickers = new Map<string, Ticker>();
  private saveTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(root: HTMLElement, channels: string[]) {
    const grid = root.querySelector(".tickers") as HTMLElement;
    const saved = loadSaved();
    for (const channel of channels) {
      const t = new Ticker(channel);
      this.tickers.set(channel, t);
      grid.append(t.node);
      if (saved[channel]) t.showStale(saved[channel]);
    }
    addEventListener("pagehide", () => this.save());
  }

  /** Writes the newest price of each ticker to localStorage (other channels' entries are kept). */
  save(): void {
    clearTimeout(this.saveTimer);
    this.saveTimer = undefined;
    const saved = loadSaved();
    for (const [channel, t] of this.tickers) {
      const latest = t.latest;
      if (latest && !((saved[channel]?.ts ?? 0) > latest.ts)) saved[channel] = latest;
    }
    try {
      localStorage.setItem(SAVED_PRICES_KEY, JSON.stringify(saved));
    } catch {
      // storage full or refused: the prices are only not kept
    }
  }

  private saveSoon(): void {
    if (this.saveTimer === undefined) this.saveTimer = setTimeout(() => this.save(), 250);
  }

  get channels(): string[] {
    return [...this.tickers.keys()];
  }

  add(env: Envelope, live = true): void {
    if (this.tickers.get(env.channel)?.add(env, live)) this.saveSoon();
  }

  /** Recent history (oldest first) to seed a sparkline. */
  seed(channel: string, publications: Envelope[]): void {
    const t = this.tickers.get(channel);
    if (!t) return;
    let added = false;
    for (const env of publications) added = t.add({ ...env, channel }, false) || added;
    if (added) this.saveSoon();
  }

  tick(now: number): void {
    for (const t of this.tickers.values()) t.tick(now);
  }
}

/** `BTC-USD`, `price:BTC-USD` -> `price:BTC-USD`; anything not a valid channel name is dropped. */
export function priceChannels(spec: string): string[] {
  const out: string[] = [];
  for (const part of spec.split(",")) {
    const name = part.trim();
    if (!name) continue;
    const channel = name.startsWith("price:") ? name : `price:${name}`;
    if (/^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$/.test(channel) && !out.includes(channel)) out.push(channel);
  }
  return out;
}
