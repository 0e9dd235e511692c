//! Per-channel positions and de-duplication: what has been delivered, what to send as `since`
//! on the next subscribe, and when a channel must be resynced from the history API. No I/O,
//! so every rule is unit-tested here; `connection` does the fetching.

use std::collections::{BTreeMap, HashSet, VecDeque};

use crate::envelope::{Envelope, Position, SubscribedChannel};

/// How many (channel, signal id) pairs are remembered for de-duplication.
pub(crate) const SEEN_SIGNAL_IDS: usize = 1000;

/// What to do with a live publication.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Deliver,
    /// Already delivered (by seq or by signal id), or for a channel not held.
    Drop,
    /// The stream cannot continue from the position: a new epoch or a seq gap. Resync the
    /// channel toward `epoch`, then merge this publication.
    Resync {
        epoch: String,
    },
}

#[derive(Debug, Default)]
struct ChannelState {
    /// The last publication delivered, or the position the first subscribe reported.
    pos: Option<Position>,
    /// Right after a first subscribe, a latest-value channel sends its newest publication,
    /// whose seq equals the reported position: deliver it once.
    snapshot_ok: bool,
    /// The server refused or took away the subscription; asked again on the next connection
    /// or identity change.
    lost: bool,
}

/// Positions of every channel the client holds, and the recently seen signal ids.
#[derive(Debug, Default)]
pub(crate) struct Recovery {
    channels: BTreeMap<String, ChannelState>,
    seen: RecentSet,
}

impl Recovery {
    /// Starts holding `name`; false when it was held already.
    pub fn add(&mut self, name: &str) -> bool {
        if self.channels.contains_key(name) {
            return false;
        }
        self.channels
            .insert(name.to_string(), ChannelState::default());
        true
    }

    /// Forgets `name` and its position.
    pub fn remove(&mut self, name: &str) {
        self.channels.remove(name);
    }

    pub fn contains(&self, name: &str) -> bool {
        self.channels.contains_key(name)
    }

    /// Every channel held.
    pub fn names(&self) -> Vec<String> {
        self.channels.keys().cloned().collect()
    }

    /// Channels the server refused or took away.
    pub fn lost(&self) -> Vec<String> {
        self.channels
            .iter()
            .filter(|(_, c)| c.lost)
            .map(|(n, _)| n.clone())
            .collect()
    }

    pub fn set_lost(&mut self, name: &str) {
        if let Some(c) = self.channels.get_mut(name) {
            c.lost = true;
        }
    }

    /// The `since` map for a subscribe of `names`: the position of each that has one.
    pub fn since(&self, names: &[String]) -> BTreeMap<String, Position> {
        names
            .iter()
            .filter_map(|n| Some((n.clone(), self.channels.get(n)?.pos.clone()?)))
            .collect()
    }

    /// The server's subscribe answer for one channel. Returns the epoch to resync toward when
    /// the answer leaves a gap (not recovered after a position, or a new epoch).
    pub fn subscribed(&mut self, s: &SubscribedChannel) -> Option<String> {
        let ch = self.channels.get_mut(&s.channel)?;
        ch.lost = false;
        match &ch.pos {
            None => {
                ch.pos = Some(Position {
                    epoch: s.epoch.clone(),
                    seq: s.seq,
                });
                ch.snapshot_ok = true;
                None
            }
            Some(pos) if pos.epoch == s.epoch && (s.recovered || s.seq <= pos.seq) => None,
            Some(_) => Some(s.epoch.clone()),
        }
    }

    /// The history `since` for a resync of `name` toward `epoch`: 0 when the epoch is new
    /// (all of its history is unseen), else the position. `None` without a position.
    pub fn resync_since(&self, name: &str, epoch: &str) -> Option<(String, u64)> {
        let pos = self.channels.get(name)?.pos.as_ref()?;
        let since = if pos.epoch == epoch { pos.seq } else { 0 };
        Some((pos.epoch.clone(), since))
    }

    /// A live (or replayed) publication.
    pub fn publication(&mut self, env: &Envelope) -> Verdict {
        let Some(ch) = self.channels.get(&env.channel) else {
            return Verdict::Drop;
        };
        if let Some(pos) = &ch.pos {
            if env.epoch != pos.epoch || env.seq > pos.seq.saturating_add(1) {
                return Verdict::Resync {
                    epoch: env.epoch.clone(),
                };
            }
            if env.seq < pos.seq || (env.seq == pos.seq && !ch.snapshot_ok) {
                return Verdict::Drop;
            }
        }
        self.deliver(env)
    }

    /// A publication found by a resync toward `target`: delivered when it is of that epoch
    /// and after the position (a gap the history could not close is accepted).
    pub fn merge(&mut self, env: &Envelope, target: &str) -> Verdict {
        if env.epoch != target {
            return Verdict::Drop;
        }
        let Some(ch) = self.channels.get(&env.channel) else {
            return Verdict::Drop;
        };
        if let Some(pos) = &ch.pos {
            if pos.epoch == target && env.seq <= pos.seq {
                return Verdict::Drop;
            }
        }
        self.deliver(env)
    }

    /// Moves the position to `env`; drops it when its signal id was seen on the channel.
    fn deliver(&mut self, env: &Envelope) -> Verdict {
        let Some(ch) = self.channels.get_mut(&env.channel) else {
            return Verdict::Drop;
        };
        ch.snapshot_ok = false;
        ch.pos = Some(Position {
            epoch: env.epoch.clone(),
            seq: env.seq,
        });
        match env.signal_id() {
            Some(id) if !self.seen.insert(format!("{}\n{id}", env.channel)) => Verdict::Drop,
            _ => Verdict::Deliver,
        }
    }
}

/// A set that remembers only its most recent [`SEEN_SIGNAL_IDS`] keys.
#[derive(Debug, Default)]
struct RecentSet {
    keys: HashSet<String>,
    order: VecDeque<String>,
}

impl RecentSet {
    /// Adds `key`; false when it was there already.
    fn insert(&mut self, key: String) -> bool {
        if self.keys.contains(&key) {
            return false;
        }
        if self.order.len() == SEEN_SIGNAL_IDS {
            if let Some(old) = self.order.pop_front() {
                self.keys.remove(&old);
            }
        }
        self.keys.insert(key.clone());
        self.order.push_back(key);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    fn env(channel: &str, epoch: &str, seq: u64) -> Envelope {
        Envelope {
            kind: "test".into(),
            channel: channel.into(),
            epoch: epoch.into(),
            seq,
            id: format!("pub_{seq}"),
            timestamp: "t".into(),
            tier: None,
            data: Some(RawValue::from_string(format!("{{\"n\":{seq}}}")).unwrap()),
            locked_kind: None,
        }
    }

    fn signal(channel: &str, seq: u64, signal_id: &str) -> Envelope {
        let mut e = env(channel, "e1", seq);
        e.data = Some(RawValue::from_string(format!("{{\"signal_id\":\"{signal_id}\"}}")).unwrap());
        e
    }

    fn subscribed(channel: &str, epoch: &str, seq: u64, recovered: bool) -> SubscribedChannel {
        SubscribedChannel {
            channel: channel.into(),
            epoch: epoch.into(),
            seq,
            recovered,
        }
    }

    fn held(channel: &str) -> Recovery {
        let mut r = Recovery::default();
        r.add(channel);
        r
    }

    #[test]
    fn a_first_subscribe_records_the_position_and_sends_no_since() {
        let mut r = held("a");
        assert!(r.since(&r.names()).is_empty());
        assert_eq!(r.subscribed(&subscribed("a", "e1", 5, false)), None);
        assert_eq!(
            r.since(&r.names())["a"],
            Position {
                epoch: "e1".into(),
                seq: 5
            }
        );
    }

    #[test]
    fn the_latest_value_snapshot_is_delivered_once_after_a_first_subscribe() {
        let mut r = held("price:X");
        r.subscribed(&subscribed("price:X", "e1", 5, false));
        assert_eq!(r.publication(&env("price:X", "e1", 5)), Verdict::Deliver);
        assert_eq!(r.publication(&env("price:X", "e1", 5)), Verdict::Drop);
        assert_eq!(r.publication(&env("price:X", "e1", 6)), Verdict::Deliver);
    }

    #[test]
    fn replays_and_live_publications_are_delivered_in_order_and_repeats_dropped() {
        let mut r = held("a");
        r.subscribed(&subscribed("a", "e1", 0, false));
        for seq in 1..=3 {
            assert_eq!(r.publication(&env("a", "e1", seq)), Verdict::Deliver);
        }
        assert_eq!(r.publication(&env("a", "e1", 2)), Verdict::Drop);
        assert_eq!(r.publication(&env("a", "e1", 3)), Verdict::Drop);
        // A reconnect: the server recovered, the replay continues after 3.
        assert_eq!(r.subscribed(&subscribed("a", "e1", 5, true)), None);
        assert_eq!(r.publication(&env("a", "e1", 4)), Verdict::Deliver);
        assert_eq!(r.since(&r.names())["a"].seq, 4);
    }

    #[test]
    fn an_unrecovered_gap_or_a_new_epoch_asks_for_a_resync() {
        let mut r = held("a");
        r.subscribed(&subscribed("a", "e1", 2, false));
        assert_eq!(
            r.subscribed(&subscribed("a", "e1", 9, false)),
            Some("e1".into())
        );
        assert_eq!(r.resync_since("a", "e1"), Some(("e1".into(), 2)));
        assert_eq!(
            r.subscribed(&subscribed("a", "e2", 1, false)),
            Some("e2".into())
        );
        assert_eq!(r.resync_since("a", "e2"), Some(("e1".into(), 0)));
        // Nothing new on the same epoch: nothing to fetch.
        assert_eq!(r.subscribed(&subscribed("a", "e1", 2, false)), None);
    }

    #[test]
    fn a_live_seq_gap_or_epoch_change_asks_for_a_resync() {
        let mut r = held("a");
        r.subscribed(&subscribed("a", "e1", 0, false));
        assert_eq!(r.publication(&env("a", "e1", 1)), Verdict::Deliver);
        assert_eq!(
            r.publication(&env("a", "e1", 3)),
            Verdict::Resync { epoch: "e1".into() }
        );
        assert_eq!(
            r.publication(&env("a", "e2", 1)),
            Verdict::Resync { epoch: "e2".into() }
        );
    }

    #[test]
    fn merge_delivers_only_the_target_epoch_after_the_position() {
        let mut r = held("a");
        r.subscribed(&subscribed("a", "e1", 0, false));
        r.publication(&env("a", "e1", 1));
        assert_eq!(r.merge(&env("a", "e1", 1), "e1"), Verdict::Drop);
        assert_eq!(r.merge(&env("a", "e1", 4), "e1"), Verdict::Deliver);
        assert_eq!(r.merge(&env("a", "e1", 3), "e1"), Verdict::Drop);
        assert_eq!(r.merge(&env("a", "e2", 1), "e1"), Verdict::Drop);
        // Toward a new epoch, everything of it is new.
        assert_eq!(r.merge(&env("a", "e2", 1), "e2"), Verdict::Deliver);
        assert_eq!(r.since(&r.names())["a"].epoch, "e2");
    }

    #[test]
    fn a_repeated_signal_id_is_dropped_per_channel_but_the_position_moves() {
        let mut r = Recovery::default();
        r.add("a");
        r.add("b");
        r.subscribed(&subscribed("a", "e1", 0, false));
        r.subscribed(&subscribed("b", "e1", 0, false));
        assert_eq!(r.publication(&signal("a", 1, "s1")), Verdict::Deliver);
        assert_eq!(r.publication(&signal("a", 2, "s1")), Verdict::Drop);
        assert_eq!(r.since(&r.names())["a"].seq, 2);
        // The same signal on another channel is that channel's own copy.
        assert_eq!(r.publication(&signal("b", 1, "s1")), Verdict::Deliver);
    }

    #[test]
    fn signal_ids_are_remembered_within_a_bound() {
        let mut set = RecentSet::default();
        assert!(set.insert("first".into()));
        for i in 0..SEEN_SIGNAL_IDS {
            assert!(set.insert(format!("k{i}")));
        }
        assert_eq!(set.keys.len(), SEEN_SIGNAL_IDS);
        assert!(set.insert("first".into()), "the oldest key was forgotten");
        assert!(!set.insert(format!("k{}", SEEN_SIGNAL_IDS - 1)));
    }

    #[test]
    fn publications_for_channels_not_held_are_dropped() {
        let mut r = held("a");
        assert_eq!(r.publication(&env("b", "e1", 1)), Verdict::Drop);
        r.set_lost("a");
        assert_eq!(r.lost(), ["a"]);
        r.subscribed(&subscribed("a", "e1", 0, false));
        assert!(r.lost().is_empty());
    }
}
