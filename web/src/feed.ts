// The live signals feed: newest on top, locked rows for signals above the viewer's tier (live
// `locked` stubs, and the stored ones `GET /api/v1/signals?locked=true` lists after a reload),
// stop-loss and take-profit levels, ages that tick, and filters by pair, side and tier.

import { ago, canSee, el, num, percent, price, time } from "./format";
import { lockIcon } from "./icons";
import type { Envelope, LockedStub, SignalRecord } from "./types";

const MAX_ROWS = 200;

interface Row {
  /** Envelope (publication) id, when known: from a publication or a stored stub's `id`. */
  envId?: string;
  /** The signal_id, when known: from the record or a stored stub. */
  signalId?: string;
  ts: number;
  tier: string;
  /** The record; none for a locked row. */
  rec?: SignalRecord;
  node: HTMLLIElement;
}

type NewRow = Omit<Row, "node">;

/** What the feed shows: `pair` a part of the pair (upper case), `side` a signal type, `tier` a tier; "" is any. */
export interface Filters {
  pair: string;
  side: string;
  tier: string;
}

export const NO_FILTERS: Filters = { pair: "", side: "", tier: "" };

export type SeenSignal = (rec: SignalRecord, ts: number) => void;

export class SignalFeed {
  /** The tier the page views as: data above it is never shown, whatever a read returned. */
  viewerTier = "free";
  private filters: Filters = NO_FILTERS;
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

  /** Stored signals from `GET /api/v1/signals?locked=true` (newest first): records and locked stubs. */
  addRecords(items: Array<SignalRecord | LockedStub>): void {
    for (const item of items) {
      if (!item || typeof item !== "object") continue;
      if ((item as LockedStub).locked === true) {
        this.addStub(item as LockedStub);
        continue;
      }
      const rec = item as SignalRecord;
      if (typeof rec.pair !== "string") continue;
      const known = rec.signal_id ? this.bySignal.get(rec.signal_id) : undefined;
      if (known?.rec) continue;
      // A locked row of this signal (the viewer's tier went up): it becomes the signal.
      if (known) this.remove(known);
      this.insert({ envId: known?.envId, signalId: rec.signal_id, ts: time(rec.timestamp), tier: rec.tier ?? "free", rec }, false);
    }
  }

  /** A stored signal above the viewer's tier: one locked row, merged with a live one by publication id. */
  private addStub(stub: LockedStub): void {
    const envId = typeof stub.id === "string" ? stub.id : undefined;
    const signalId = typeof stub.signal_id === "string" ? stub.signal_id : undefined;
    const live = envId ? this.byEnv.get(envId) : undefined;
    if (live) {
      // The same signal as a live/history row: remember its signal_id, so that its record
      // replaces it once the viewer may see it.
      if (signalId && !live.signalId && !this.bySignal.has(signalId)) {
        live.signalId = signalId;
        this.bySignal.set(signalId, live);
        if (!live.rec) live.node.dataset.lockedSignal = signalId;
      }
      return;
    }
    if (signalId && this.bySignal.has(signalId)) return;
    this.insert({ envId, signalId, ts: time(stub.timestamp), tier: stub.tier ?? "premium" }, false);
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
        row.rec = undefined;
        this.rerender(row);
      } else if (!row.rec && visible) {
        this.remove(row);
      }
    }
    this.refreshCount();
  }

  /** Shows only the rows that match; a locked row has no pair or side, so either filter hides it. */
  setFilters(filters: Filters): void {
    this.filters = { ...filters };
    for (const row of this.rows) row.node.hidden = !this.matches(row);
    this.refreshCount();
  }

  /** Updates the "3s ago" labels. */
  tick(now: number): void {
    for (const row of this.rows) {
      const age = row.node.querySelector("time");
      if (age) age.textContent = ago(row.ts, now);
    }
  }

  private matches(row: Row): boolean {
    const f = this.filters;
    if (f.tier && row.tier.toLowerCase() !== f.tier) return false;
    if (!f.pair && !f.side) return true;
    if (!row.rec) return false;
    if (f.pair && !(row.rec.pair ?? "").toUpperCase().includes(f.pair)) return false;
    if (f.side && (row.rec.signal_type ?? "").toUpperCase() !== f.side) return false;
    return true;
  }

  private insert(fields: NewRow, fresh: boolean): void {
    const row = fields as Row;
    // Data above the viewer's tier is never shown, whatever a read returned: a locked row.
    if (row.rec && !canSee(this.viewerTier, row.tier)) row.rec = undefined;
    if (row.envId && this.byEnv.has(row.envId)) return;
    if (row.signalId && this.bySignal.has(row.signalId)) return;
    if (!row.envId && !row.signalId && !row.rec) return;
    row.node = this.render(row, fresh);
    row.node.hidden = !this.matches(row);
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

  private rerender(row: Row): void {
    const node = this.render(row, false);
    node.hidden = !this.matches(row);
    row.node.replaceWith(node);
    row.node = node;
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
    const shown = this.rows.filter((r) => !r.node.hidden);
    const locked = shown.filter((r) => !r.rec).length;
    const filtered = shown.length < this.rows.length;
    this.empty.hidden = shown.length > 0;
    this.empty.textContent = this.rows.length > 0 ? "No signals match the filters." : "Waiting for signals…";
    this.count.textContent = `${filtered ? `${shown.length} of ${this.rows.length}` : this.rows.length} shown${locked ? ` · ${locked} locked` : ""}`;
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
      if (row.signalId) li.dataset.lockedSignal = row.signalId;
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
    li.dataset.side = side;
    li.dataset.tier = row.tier;

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

    li.append(sideEl, pair, entry, levels(rec), conf, tier, age);
    return li;
  }
}

/** Stop-loss and take-profit targets: "SL 1.0900" over "TP 1.1000 · 1.1050"; "—" when neither is set. */
function levels(rec: SignalRecord): HTMLElement {
  const node = el("span", "levels num");
  const stop = num(rec.stop_loss);
  const raw = rec.take_profit;
  const targets = (Array.isArray(raw) ? raw : raw === undefined || raw === null ? [] : [raw])
    .map((t) => num(t))
    .filter((t): t is number => t !== undefined);
  if (stop === undefined && targets.length === 0) {
    node.textContent = "—";
    node.title = "no stop-loss or take-profit";
    return node;
  }
  const sl = el("span", "sl", `SL ${stop === undefined ? "—" : price(stop)}`);
  sl.title = "stop-loss";
  const tp = el("span", "tp", `TP ${targets.length ? targets.map(price).join(" · ") : "—"}`);
  tp.title = targets.length > 1 ? `take-profit targets (${targets.length})` : "take-profit";
  node.append(sl, tp);
  return node;
}

function cssName(tier: string): string {
  return tier.toLowerCase().replace(/[^a-z0-9-]/g, "");
}
