// Shapes the dashboard reads: the envelope is the client's, the rest the server's.

export type { Envelope } from "../../clients/js/src/index.ts";

/** The signal record of the wire contract, section 7. */
export interface SignalRecord {
  signal_id?: string;
  pair?: string;
  signal_type?: string;
  entry_price?: number | string;
  stop_loss?: number | string;
  take_profit?: Array<number | string> | number | string;
  confidence_score?: number | string;
  timeframe?: string;
  strategy?: string;
  source?: string;
  timestamp?: string;
  tier?: string;
}

/**
 * A stored signal above the viewer's tier, from `GET /api/v1/signals?locked=true`: what the
 * live `locked` frame reveals. `id` is that frame's publication id (once published).
 */
export interface LockedStub {
  locked: true;
  signal_id?: string;
  id?: string;
  tier?: string;
  timestamp?: string;
  kind?: string;
}

export interface Stats {
  total_connections?: number;
  active_users?: number;
  channels?: number;
  subscriptions?: number;
  publications?: number;
  messages_in?: number;
  messages_out?: number;
  uptime_s?: number;
}
