// Price tickers for `price:*` channels, each with a sparkline of the recent updates.

import { ago, el, num, price, time } from "./format";
import { Sparkline } from "./sparkline";
import type { Envelope } from "./types";

const POINTS = 60;

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

  constructor(readonly channel: string) {
    this.node = el("article", "ticker flat");
    this.node.dataset.channel = channel;
    const head = el("header");
    head.append(el("span", "symbol", channel.slice("price:".length)), (this.changeEl = el("span", "change num", "")));
    this.priceEl = el("div", "price num", "—");
    this.ageEl = el("time", "age", "waiting for a price");
    this.node.append(head, this.priceEl, this.spark.svg, this.ageEl);
  }

  add(env: Envelope, live: boolean): void {
    const v = priceOf(env.data);
    if (v === undefined) return;
    if (this.points.some((p) => p.id === env.id)) return;
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
  }

  tick(now: number): void {
    if (this.lastTs) this.ageEl.textContent = `updated ${ago(this.lastTs, now)}`;
  }
}

export class Tickers {
  private readonly tickers = new Map<string, Ticker>();

  constructor(root: HTMLElement, channels: string[]) {
    const grid = root.querySelector(".tickers") as HTMLElement;
    for (const channel of channels) {
      const t = new Ticker(channel);
      this.tickers.set(channel, t);
      grid.append(t.node);
    }
  }

  get channels(): string[] {
    return [...this.tickers.keys()];
  }

  add(env: Envelope, live = true): void {
    this.tickers.get(env.channel)?.add(env, live);
  }

  /** Recent history (oldest first) to seed a sparkline. */
  seed(channel: string, publications: Envelope[]): void {
    const t = this.tickers.get(channel);
    if (!t) return;
    for (const env of publications) t.add({ ...env, channel }, false);
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
