/**
 * One subscribed channel: its callbacks, the last position delivered, de-duplication, and
 * resync from HTTP history when the live stream cannot close a gap (recovered:false, a new
 * epoch, a seq gap). Publications arriving during a resync are held back and delivered after
 * the fetched ones, so callbacks always see each publication once, in order.
 */
import type { HistoryPage } from "./http.js";
import type { Envelope, ErrorInfo, Position, ResyncInfo, SubscribedChannel } from "./types.js";

export interface ChannelHost {
  history(channel: string, since: number): Promise<HistoryPage>;
  /** Records `channel`'s signal id; false when it was seen already. */
  firstSight(channel: string, signalId: string): boolean;
  resynced(info: ResyncInfo): void;
  error(info: ErrorInfo): void;
}

export class Channel {
  readonly callbacks = new Set<(p: Envelope) => void>();
  /** The last publication delivered (or the subscribe position). */
  pos: Position | null = null;
  /** The server refused or took away the subscription; retried when the identity changes. */
  lost = false;
  private snapshotOk = false;
  private resyncing = false;
  private again: string | undefined | null = null;
  private held: Envelope[] = [];

  constructor(
    readonly name: string,
    private readonly host: ChannelHost,
  ) {}

  /** The server's subscribe answer. */
  subscribed(s: SubscribedChannel): void {
    this.lost = false;
    const pos = this.pos;
    if (!pos) {
      this.pos = { epoch: s.epoch, seq: s.seq };
      this.snapshotOk = true; // latest-value channels send their newest publication (seq == s.seq)
      return;
    }
    if (s.epoch === pos.epoch && (s.recovered || s.seq <= pos.seq)) return;
    this.resync(s.epoch);
  }

  publication(env: Envelope): void {
    if (this.resyncing) {
      this.held.push(env);
      return;
    }
    const pos = this.pos;
    if (pos && (env.epoch !== pos.epoch || env.seq > pos.seq + 1)) {
      this.held.push(env);
      this.resync(env.epoch);
      return;
    }
    if (pos && env.seq < pos.seq) return;
    if (pos && env.seq === pos.seq && !this.snapshotOk) return;
    this.deliver(env);
  }

  /** Fetches what was missed since `pos` (from seq 0 when `epoch` says the history is new). */
  resync(epoch?: string): void {
    if (!this.pos) return;
    if (this.resyncing) {
      this.again = epoch;
      return;
    }
    this.resyncing = true;
    void this.runResync(epoch);
  }

  private async runResync(epoch: string | undefined): Promise<void> {
    const from = this.pos as Position;
    let target: string | null = null;
    try {
      const since = epoch && epoch !== from.epoch ? 0 : from.seq;
      let page = await this.host.history(this.name, since);
      if (since !== 0 && page.epoch !== null && page.epoch !== from.epoch) {
        page = await this.host.history(this.name, 0); // a new epoch: all of it is unseen
      }
      target = page.epoch;
      if (page.epoch !== null) {
        this.host.resynced({ channel: this.name, epoch: page.epoch, publications: page.publications });
      }
      for (const env of page.publications) this.merge(env, target);
    } catch (e: any) {
      this.host.error({ code: "resync_failed", message: String(e?.message ?? e), channel: this.name });
    }
    const held = this.held;
    this.held = [];
    target ??= held[held.length - 1]?.epoch ?? null;
    for (const env of held) this.merge(env, target);
    this.resyncing = false;
    if (this.again !== null) {
      const next = this.again;
      this.again = null;
      this.resync(next);
    }
  }

  /** Delivers `env` when it belongs to `target` epoch and is after the position (gaps accepted). */
  private merge(env: Envelope, target: string | null): void {
    if (target === null || env.epoch !== target) return;
    const pos = this.pos;
    if (pos && pos.epoch === target && env.seq <= pos.seq) return;
    this.deliver(env);
  }

  private deliver(env: Envelope): void {
    this.snapshotOk = false;
    this.pos = { epoch: env.epoch, seq: env.seq };
    const signalId = (env.data as { signal_id?: unknown } | undefined)?.signal_id;
    if (typeof signalId === "string" && !this.host.firstSight(this.name, signalId)) return;
    for (const cb of [...this.callbacks]) {
      try {
        cb(env);
      } catch (e) {
        queueMicrotask(() => {
          throw e;
        });
      }
    }
  }
}
