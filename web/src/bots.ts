// Bots seen in signals. The server has no bots API yet, so this panel is derived from the
// `source` of the signals this page has received (`bot:{id}`), and says so.

import { ago, el, num, price } from "./format";
import type { SignalRecord } from "./types";

interface Bot {
  id: string;
  signals: Set<string>;
  last: SignalRecord;
  lastTs: number;
  node: HTMLLIElement;
}

const BOT_SOURCE = /^bot:(.+)$/;

export class BotsPanel {
  private bots = new Map<string, Bot>();
  private readonly list: HTMLElement;
  private readonly empty: HTMLElement;
  private anonymous = 0;

  constructor(root: HTMLElement) {
    this.list = root.querySelector("ol.bots") as HTMLElement;
    this.empty = root.querySelector(".bots-empty") as HTMLElement;
  }

  seen(rec: SignalRecord, ts: number): void {
    const match = typeof rec.source === "string" ? BOT_SOURCE.exec(rec.source) : null;
    if (!match) return;
    const id = match[1];
    let bot = this.bots.get(id);
    if (!bot) {
      bot = { id, signals: new Set(), last: rec, lastTs: ts, node: el("li", "bot") };
      bot.node.dataset.bot = id;
      this.bots.set(id, bot);
    }
    const key = rec.signal_id ?? `anon-${this.anonymous++}`;
    if (bot.signals.has(key)) return;
    bot.signals.add(key);
    if (ts >= bot.lastTs) {
      bot.last = rec;
      bot.lastTs = ts;
    }
    this.render(bot);
    this.order();
  }

  tick(now: number): void {
    for (const bot of this.bots.values()) {
      const age = bot.node.querySelector("time");
      if (age) age.textContent = ago(bot.lastTs, now);
    }
  }

  private render(bot: Bot): void {
    const side = (bot.last.signal_type ?? "").toUpperCase();
    const entry = num(bot.last.entry_price);
    const name = el("span", "bot-id");
    name.append(el("i", "dot live"), el("b", undefined, `bot:${bot.id}`));
    const last = el("span", "bot-last");
    last.append(
      el("span", `side-text ${side === "BUY" ? "buy" : side === "SELL" ? "sell" : ""}`, side || "—"),
      document.createTextNode(` ${bot.last.pair ?? ""}${entry === undefined ? "" : ` @ ${price(entry)}`}`),
    );
    const count = el("span", "bot-count num", String(bot.signals.size));
    count.title = "signals seen";
    const age = el("time", "age", ago(bot.lastTs));
    bot.node.replaceChildren(name, last, count, age);
  }

  private order(): void {
    const sorted = [...this.bots.values()].sort((a, b) => b.lastTs - a.lastTs);
    this.list.replaceChildren(...sorted.map((b) => b.node));
    this.empty.hidden = sorted.length > 0;
  }
}
