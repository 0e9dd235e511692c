// The live signals feed: newest on top, locked stubs as locked rows, ages that tick.

import { ago, canSee, el, num, percent, price, time } from "./format";
import { lockIcon } from "./icons";
import type { Envelope, SignalRecord } from "./types";

const MAX_ROWS = 200;

interface Row {
  /** Envelope id, when the row came from a publication. */
  envId?: string;
  /** The record's signal_id, when the row has data. */
  signalId?: string;
  ts: number;
  tier: string;
  rec?: SignalRecord;
  node: HTMLLIElement;
}

type NewRow = Omit<Row, "node">;

export type SeenSignal = (rec: SignalRecord, ts: number) => void;

export class SignalFeed {
  /** The tier the page views as: data above it is never shown, whatever a read returned. */
  viewerTier = "free";
  private rows: Row[] = [];
  private byEnv = new Map<string, Row>();
  private bySignal = new Map<string, Row>();
  private readonly list: HTMLOListElement;
  private readonly empty: HTMLElement;
  private readonly count: HTMLElement;

  constructor(
    root: HTMLElement,
    private readonly onSeen: SeenSignal,
  ) {
    this.list = root.querySelector("ol.feed") as HTMLOListElement;
    this.empty = root.querySelector(".feed-empty") as HTMLElement;
    this.count = root.querySelector(".feed-count") as HTMLElement;
  }

  /** A publication from the `signals` channel (or its history): a signal or a locked stub. */
  addEnvelope(env: Envelope, fresh = true): void {
    if (env.type === "locked") {
      if (this.byEnv.has(env.id)) return;
      this.insert({ envId: env.id, ts: time(env.timestamp), tier: env.tier ?? "premium" }, fresh);
      return;
    }
    const rec = env.data as SignalRecord | undefined;
    if (!rec || typeof rec !== "object" || typeof rec.pair !== "string") return;
    const known = (rec.signal_id && this.bySignal.get(rec.signal_id)) || this.byEnv.get(env.id);
    if (known?.rec) return;
    const row: NewRow = {
      envId: env.id,
      signalId: rec.signal_id,
      ts: time(rec.timestamp ?? env.timestamp),
      tier: env.tier ?? rec.tier ?? "free",
      rec,
    };
    if (known) this.remove(known);
    this.insert(row, fresh);
  }

  /** Stored signals from `GET /api/v1/signals` (newest first). */
  addRecords(records: SignalRecord[]): void {
    for (const rec of records) {
      if (!rec || typeof rec.pair !== "string") continue;
      if (rec.signal_id && this.bySignal.has(rec.signal_id)) continue;
      this.insert({ signalId: rec.signal_id, ts: time(rec.timestamp), tier: rec.tier ?? "free", rec }, false);
    }
  }

  /**
   * After the viewer's tier changed and the history was merged in: rows the viewer may no
   * longer see become locked, locked rows it may now see but could not fill are dropped.
   */
  applyTier(viewerTier: string): void {
    this.viewerTier = viewerTier;
    for (const row of [...this.rows]) {
      const visible = canSee(viewerTier, row.tier);
      if (row.rec && !visible) {
        if (row.signalId) this.bySignal.delete(row.signalId);
        row.rec = undefined;
        row.signalId = undefined;
        const node = this.render(row, false);
        row.node.replaceWith(node);
        row.node = node;
        if (!row.envId) this.remove(row);
      } else if (!row.rec && visible) {
        this.remove(row);
      }
    }
    this.refreshCount();
  }

  /** Updates the "3s ago" labels. */
  tick(now: number): void {
    for (const row of this.rows) {
      const age = row.node.querySelector("time");
      if (age) age.textContent = ago(row.ts, now);
    }
  }

  private insert(fields: NewRow, fresh: boolean): void {
    const row = fields as Row;
    if (row.rec && !canSee(this.viewerTier, row.tier)) {
      if (!row.envId) return; // a stored record above the tier: the server would have left it out
      row.rec = undefined;
      row.signalId = undefined;
    }
    if (!row.rec && row.envId && this.byEnv.has(row.envId)) return;
    row.node = this.render(row, fresh);
    let i = 0;
    while (i < this.rows.length && this.rows[i].ts > row.ts) i++;
    if (i >= MAX_ROWS) return;
    const before = this.rows[i];
    this.rows.splice(i, 0, row);
    this.list.insertBefore(row.node, before ? before.node : null);
    if (row.envId) this.byEnv.set(row.envId, row);
    if (row.signalId) this.bySignal.set(row.signalId, row);
    while (this.rows.length > MAX_ROWS) this.remove(this.rows[this.rows.length - 1]);
    if (row.rec) this.onSeen(row.rec, row.ts);
    this.refreshCount();
  }

  private remove(row: Row): void {
    const i = this.rows.indexOf(row);
    if (i >= 0) this.rows.splice(i, 1);
    row.node.remove();
    if (row.envId && this.byEnv.get(row.envId) === row) this.byEnv.delete(row.envId);
    if (row.signalId && this.bySignal.get(row.signalId) === row) this.bySignal.delete(row.signalId);
    this.refreshCount();
  }

  private refreshCount(): void {
    this.empty.hidden = this.rows.length > 0;
    const locked = this.rows.filter((r) => !r.rec).length;
    this.count.textContent = `${this.rows.length} shown${locked ? ` · ${locked} locked` : ""}`;
  }

  private render(row: NewRow, fresh: boolean): HTMLLIElement {
    const li = el("li", "row");
    if (fresh) li.classList.add("fresh");
    const tier = el("span", `badge tier tier-${cssName(row.tier)}`, row.tier);
    const age = el("time", "age", ago(row.ts, Date.now()));
    age.dateTime = new Date(row.ts).toISOString();
    if (!row.rec) {
      li.classList.add("locked");
      li.dataset.locked = row.tier;
      if (row.envId) li.dataset.id = row.envId;
      const lock = el("span", "lock");
      lock.append(lockIcon());
      const text = el("span", "locked-text", `${row.tier} signal — upgrade to see`);
      li.append(lock, text, tier, age);
      return li;
    }
    const rec = row.rec;
    const side = (rec.signal_type ?? "").toUpperCase();
    li.classList.add(side === "BUY" ? "buy" : side === "SELL" ? "sell" : "other");
    if (rec.signal_id) li.dataset.signalId = rec.signal_id;
    if (row.envId) li.dataset.id = row.envId;
    li.dataset.pair = rec.pair ?? "";

    const sideEl = el("span", "side", side || "—");
    const pair = el("span", "pair");
    pair.append(el("b", undefined, rec.pair ?? "—"));
    const detail = [rec.source, rec.strategy, rec.timeframe].filter((x): x is string => typeof x === "string" && x !== "");
    if (detail.length) pair.append(el("small", undefined, detail.join(" · ")));

    const entryValue = num(rec.entry_price);
    const entry = el("span", "entry num", entryValue === undefined ? "—" : price(entryValue));
    entry.title = "entry price";

    const confValue = num(rec.confidence_score);
    const conf = el("span", "conf");
    const bar = el("span", "bar");
    const fill = el("i");
    fill.style.width = confValue === undefined ? "0" : `${Math.round(Math.min(1, Math.max(0, confValue)) * 100)}%`;
    bar.append(fill);
    conf.append(bar, el("span", "num", confValue === undefined ? "—" : percent(confValue)));
    conf.title = "confidence";

    li.append(sideEl, pair, entry, conf, tier, age);
    return li;
  }
}

function cssName(tier: string): string {
  return tier.toLowerCase().replace(/[^a-z0-9-]/g, "");
}
